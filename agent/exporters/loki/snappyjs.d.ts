/** snappyjs ships no types. Raw-block (not framed) snappy, as Loki's push endpoint expects. */
declare module 'snappyjs' {
  interface Snappy {
    compress<T extends Uint8Array | ArrayBuffer>(input: T): T;
    /** Throws on a malformed block or when the uncompressed length exceeds `maxLength`. */
    uncompress<T extends Uint8Array | ArrayBuffer>(input: T, maxLength?: number): T;
  }
  const snappy: Snappy;
  export default snappy;
}
