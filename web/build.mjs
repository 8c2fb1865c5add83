// Build the web editor into collab_server/static: `node build.mjs` (or `make web`).
//
// The output is deterministic (same sources, same bytes) and committed, so that serving needs no
// Node. manifest.json records a digest of the sources (src/, this script, package.json and the
// lockfile) and of every file written; tests/test_web_bundle.py recomputes both and fails when
// the committed bundle is stale.

import { createHash } from 'node:crypto'
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const WEB = path.dirname(fileURLToPath(import.meta.url))
const OUT = path.resolve(WEB, '..', 'collab_server', 'static')
const SOURCES = ['build.mjs', 'package-lock.json', 'package.json', 'src']
const PAGES = ['index.html', 'room.html']
const COPIED = ['favicon.svg']

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex')

/** Every file under `root` (a file or a folder), as sorted POSIX paths relative to `base`. */
async function filesUnder (base, root) {
  const entries = await readdir(path.join(base, root), { withFileTypes: true }).catch((error) => {
    if (error.code === 'ENOTDIR') return null
    throw error
  })
  if (entries === null) return [root]
  const nested = await Promise.all(entries.map((entry) => filesUnder(base, `${root}/${entry.name}`)))
  return nested.flat()
}

/** One digest over the paths and contents of `roots` (the same recipe as the Python test). */
async function digestOf (base, roots) {
  const files = (await Promise.all(roots.map((root) => filesUnder(base, root)))).flat().sort()
  const lines = await Promise.all(files.map(async (file) => `${file}\0${sha256(await readFile(path.join(base, file)))}\n`))
  return sha256(lines.join(''))
}

/** The license texts of every npm package that ends up in the bundle. */
async function licenses (metafile) {
  const packages = new Set()
  for (const input of Object.keys(metafile.inputs)) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input)
    if (match) packages.add(match[1])
  }
  const sections = []
  for (const name of [...packages].sort()) {
    const folder = path.join(WEB, 'node_modules', name)
    const manifest = JSON.parse(await readFile(path.join(folder, 'package.json'), 'utf8'))
    const licenseFile = (await readdir(folder)).sort().find((file) => /^(licen[cs]e|copying)/i.test(file))
    const text = licenseFile ? await readFile(path.join(folder, licenseFile), 'utf8') : `License: ${manifest.license}\n`
    sections.push(`${name}@${manifest.version} (${manifest.license})\n\n${text.trim()}\n`)
  }
  return `Third-party code bundled into this web editor.\n\n${sections.join('\n' + '-'.repeat(72) + '\n\n')}`
}

const sources = await digestOf(WEB, SOURCES)
const version = sources.slice(0, 12)

await rm(OUT, { recursive: true, force: true })
await mkdir(OUT, { recursive: true })

const result = await build({
  absWorkingDir: WEB,
  entryPoints: { editor: 'src/editor.js', lobby: 'src/lobby.js', style: 'src/style.css' },
  outdir: OUT,
  bundle: true,
  format: 'esm',
  splitting: true, // each language grammar is a chunk loaded on first use
  chunkNames: 'chunks/[name]-[hash]',
  minify: true,
  target: ['chrome105', 'firefox110', 'safari16'],
  charset: 'utf8',
  legalComments: 'none', // collected in licenses.txt instead
  metafile: true,
  logLevel: 'warning'
})

for (const page of PAGES) {
  const html = await readFile(path.join(WEB, 'src', page), 'utf8')
  await writeFile(path.join(OUT, page), html.replaceAll('__VERSION__', version))
}
for (const file of COPIED) await copyFile(path.join(WEB, 'src', file), path.join(OUT, file))
await writeFile(path.join(OUT, 'licenses.txt'), await licenses(result.metafile))

const outputs = (await filesUnder(OUT, '.')).map((file) => file.slice(2)).sort()
const files = {}
for (const file of outputs) files[file] = sha256(await readFile(path.join(OUT, file)))
const manifest = { note: 'written by web/build.mjs; run `make web` after changing web/', sources, files }
await writeFile(path.join(OUT, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n')

const total = outputs.length
console.log(`built ${total} files into ${path.relative(process.cwd(), OUT) || '.'} (sources ${version})`)
