import { packageConfig } from '../../tsup.package.js'

export default packageConfig(['ioredis', '@cache/core'])
