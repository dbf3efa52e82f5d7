// cluster-key-slot ships no types; ioredis routes commands with it, so the batch paths compute slots exactly as the client does.
declare module 'cluster-key-slot' {
  /** The Redis Cluster hash slot of a key (CRC16 mod 16384, hash tags honoured). */
  function calculateSlot(key: string | Buffer): number;
  export default calculateSlot;
}
