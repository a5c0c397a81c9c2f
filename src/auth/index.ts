export * from './policy';
export { WhoamiVerifier } from './whoami';
