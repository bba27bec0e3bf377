// What the ONNX and C lowerings share: each layer kind has a handler (onnx-lowerings.ts,
// c-lowerings.ts) that reads its module as the class of its kind.
import type { Module } from '../nn/module.js';

/** `module` as an instance of `type`, or an error naming it. */
export function moduleAs<T extends Module>(module: Module, type: abstract new (...args: never[]) => T): T {
  if (!(module instanceof type))
    throw new Error(`export: '${module.path}' (${module.kind}) is not the ${type.name} its kind's lowering reads`);
  return module;
}

/** The error of a module whose kind has no handler. */
export function noLowering(exporter: string, module: Module, handlers: ReadonlyMap<string, unknown>): string {
  return `${exporter}: layer '${module.path}' is a ${module.kind}, a kind with no lowering (the kinds with one: ${[...handlers.keys()].join(', ')})`;
}
