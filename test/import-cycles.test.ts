// The source imports form no cycle, and the folders follow the data path: a folder imports
// only folders of an earlier tier (README, design; issue 18). The imports are read with
// TypeScript's own pre-processor (every `import`, `export ... from` and `import()`, type-only
// ones included), from the sources in src/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const src = fileURLToPath(new URL('../../src/', import.meta.url));

/** The data path, tier by tier: a folder of src/ may import the folders of earlier tiers only
 *  (not its own tier's, nor a later one's). '.' is src/index.ts, the library's entry;
 *  'settings' is src/settings.ts (the environment the tool reads, declared once), below all. */
const TIERS: readonly (readonly string[])[] = [
  ['settings'],
  ['io', 'tensor'],
  ['data', 'nn'],
  ['models'],
  ['train', 'quant'],
  ['search'],
  ['export', 'report'],
  ['cli'],
  ['.'],
];

type Graph = Map<string, string[]>;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** The source file a relative specifier names: './x.js' -> x.ts, './dir' -> dir/index.ts. */
function resolveImport(from: string, specifier: string): string {
  const target = resolve(dirname(from), specifier);
  const candidates = [target.replace(/\.js$/, '.ts'), `${target}.ts`, join(target, 'index.ts')];
  const found = candidates.find((c) => existsSync(c) && statSync(c).isFile());
  if (!found) throw new Error(`${relative(src, from)}: import '${specifier}' names no source file in src/`);
  return found;
}

/** file -> the src/ files it imports (relative specifiers; packages and node: are outside). */
function importGraph(): Graph {
  const graph: Graph = new Map();
  for (const file of sourceFiles(src)) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const deps = info.importedFiles.map((f) => f.fileName).filter((s) => s.startsWith('.'));
    graph.set(
      file,
      deps.map((s) => resolveImport(file, s)),
    );
  }
  return graph;
}

/** Every cycle's files in import order (one per strongly connected component, Tarjan). */
export function findCycles(graph: Graph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(cyclePath(graph, component));
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

/** The shortest closed path through the component from its first-visited file (breadth first),
 *  for the error message. */
function cyclePath(graph: Graph, component: string[]): string[] {
  const inside = new Set(component);
  const start = component[component.length - 1];
  const parent = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i];
    for (const w of graph.get(v) ?? []) {
      if (!inside.has(w)) continue;
      if (w === start) {
        const path = [v];
        while (path[0] !== start) path.unshift(parent.get(path[0])!);
        return [...path, start];
      }
      if (!parent.has(w)) {
        parent.set(w, v);
        queue.push(w);
      }
    }
  }
  return component;
}

/** The top folder of src/ a file lies in ('.' for src/index.ts; a module of its own, by its
 *  name, for another file at the top, e.g. 'settings'). */
function folderOf(file: string): string {
  const parts = relative(src, file).split(sep);
  if (parts.length > 1) return parts[0];
  return parts[0] === 'index.ts' ? '.' : parts[0].replace(/\.ts$/, '');
}

/** The imports from a folder to one of its own tier or a later one: 'from -> to (file -> file)'. */
export function tierViolations(graph: Graph, tiers: readonly (readonly string[])[]): string[] {
  const tierOf = new Map(tiers.flatMap((folders, t) => folders.map((f) => [f, t] as const)));
  const out: string[] = [];
  for (const [file, deps] of graph) {
    const from = folderOf(file);
    const t = tierOf.get(from);
    if (t === undefined) {
      out.push(`${relative(src, file)}: folder src/${from} is in no tier of the data path`);
      continue;
    }
    for (const dep of deps) {
      const to = folderOf(dep);
      if (to !== from && !(tierOf.get(to)! < t))
        out.push(`${from} -> ${to} (${relative(src, file)} imports ${relative(src, dep)})`);
    }
  }
  return out;
}

test('the cycle finder reports a cycle of three files and the tier check a backward import', () => {
  const g: Graph = new Map([
    [join(src, 'a', 'x.ts'), [join(src, 'a', 'y.ts')]],
    [join(src, 'a', 'y.ts'), [join(src, 'b', 'z.ts')]],
    [join(src, 'b', 'z.ts'), [join(src, 'a', 'x.ts')]],
    [join(src, 'b', 'w.ts'), []],
  ]);
  const cycles = findCycles(g);
  assert.equal(cycles.length, 1);
  assert.deepEqual(
    cycles[0].map((f) => relative(src, f)),
    [join('a', 'x.ts'), join('a', 'y.ts'), join('b', 'z.ts'), join('a', 'x.ts')],
  );
  assert.deepEqual(tierViolations(g, [['b'], ['a']]), [`b -> a (${join('b', 'z.ts')} imports ${join('a', 'x.ts')})`]);
  assert.deepEqual(findCycles(new Map([[join(src, 'a', 'x.ts'), [join(src, 'b', 'w.ts')]]])), []);
});

test('src/ has no import cycle', () => {
  const graph = importGraph();
  assert.ok(graph.size > 50, `read ${graph.size} source files from ${src}`);
  const cycles = findCycles(graph).map((c) => c.map((f) => relative(src, f)).join(' -> '));
  assert.deepEqual(cycles, [], `import cycles:\n${cycles.join('\n')}`);
});

test('no folder of src/ imports one of its own tier or a later one on the data path', () => {
  const graph = importGraph();
  const folders = new Set([...graph.keys()].map(folderOf));
  assert.deepEqual(
    [...folders].filter((f) => !TIERS.flat().includes(f)),
    [],
    'a folder of src/ missing from TIERS',
  );
  const violations = tierViolations(graph, TIERS);
  assert.deepEqual(
    violations,
    [],
    `imports against the data path (${TIERS.map((t) => t.join('/')).join(' -> ')}):\n${violations.join('\n')}`,
  );
});
