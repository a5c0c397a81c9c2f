import type { K8sObject } from './helm';

interface Model {
  validate(): void;
}
type ModelClass = new (data: K8sObject) => Model;

/**
 * The kubernetes-models class for an apiVersion and kind (generated from the Kubernetes OpenAPI
 * schemas), or undefined for kinds it does not know, such as the Prometheus Operator's CRDs.
 * Its module path is the apiVersion: `kubernetes-models/apps/v1/Deployment`, `.../v1/Service`.
 */
export function modelFor(apiVersion: string, kind: string): ModelClass | undefined {
  if (!/^[a-z0-9.]+(\/v[0-9a-z]+)?$/.test(apiVersion) || !/^[A-Z][A-Za-z]+$/.test(kind)) return undefined;
  try {
    const mod = require(`kubernetes-models/${apiVersion}/${kind}`) as Record<string, ModelClass>;
    return mod[kind];
  } catch {
    return undefined;
  }
}

/** Validates offline against the Kubernetes OpenAPI schema; throws naming the object and the field. */
export function validateObject(obj: K8sObject): void {
  const Model = modelFor(obj.apiVersion, obj.kind);
  if (Model === undefined) throw new Error(`no Kubernetes schema for ${obj.apiVersion} ${obj.kind}`);
  try {
    new Model(obj).validate();
  } catch (err) {
    throw new Error(`${obj.kind} ${obj.metadata.name}: ${(err as Error).message}`, { cause: err });
  }
}
