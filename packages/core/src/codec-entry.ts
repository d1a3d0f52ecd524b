// @cache/core/codec: the codec remote tiers use. A separate entry point, so a memory-only user never loads msgpackr.
export { type Codec, type CodecCompression, type CodecOptions, createCodec, defaultCodec, hasZstd } from './codec.js'
