// Every relative link in README.md and docs/*.md points at a file that exists, and every
// #anchor at a heading of that file (GitHub's anchors: the heading in lower case, punctuation
// other than '-' and '_' removed, spaces as '-').
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const pages = [
  join(root, 'README.md'),
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => join(root, 'docs', f)),
];

/** The text outside fenced code blocks and inline code. */
function prose(md: string): string {
  return md.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
}

function anchors(md: string): Set<string> {
  const out = new Set<string>();
  for (const line of md.replace(/```[\s\S]*?```/g, '').split('\n')) {
    const m = /^#{1,6}\s+(.*)$/.exec(line);
    if (!m) continue;
    const slug = m[1]
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    out.add(slug);
  }
  return out;
}

test('README.md and docs/*.md: every relative link resolves to a file and a heading', () => {
  assert.ok(pages.length > 1, 'docs/ has pages');
  const broken: string[] = [];
  let links = 0;
  for (const page of pages) {
    const text = readFileSync(page, 'utf8');
    for (const m of prose(text).matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1];
      if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
      links++;
      const [path, anchor] = target.split('#');
      const file = path === '' ? page : resolve(dirname(page), path);
      const where = `${relative(root, page)}: (${target})`;
      if (!existsSync(file)) {
        broken.push(`${where}: no file ${relative(root, file)}`);
        continue;
      }
      if (anchor !== undefined && !anchors(readFileSync(file, 'utf8')).has(anchor))
        broken.push(`${where}: ${relative(root, file)} has no heading #${anchor}`);
    }
  }
  assert.ok(links > 20, `only ${links} links found`);
  assert.deepEqual(broken, []);
});

test('README.md is at most 250 lines and keeps the two first commands', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  assert.ok(readme.split('\n').length <= 250, `README.md has ${readme.split('\n').length} lines`);
  assert.match(readme, /^npm install && npm run demo /m);
  assert.match(readme, /^npm test /m);
});
