import { job } from 'job-reactor'

job('noop', () => {})
