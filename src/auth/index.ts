export * from './cache';
export * from './policy';
export { WhoamiVerifier } from './whoami';
