import { packageConfig } from '../../tsup.package.js'

export default packageConfig(['hono', '@cache/core'])
