// Who wrote which line: the editor's lines coloured by author, from the server's blame
// (GET api/rooms/<room>/blame), with a legend. A colour is the author's presence colour while
// someone of that name is in the room, else a hue from their name; lines written before the
// server recorded authorship (author null) are grey, and text written over REST or by a restore
// (author "server") slate. Line numbers move with edits until the next answer, which is asked
// for once the typing pauses.

import { RangeSetBuilder, StateEffect, StateField } from '@codemirror/state'
import { Decoration, EditorView } from '@codemirror/view'

export const SERVER_AUTHOR = 'server' // what the server calls text written over REST or restored
const UNKNOWN_COLOR = '#94a3b8'
const SERVER_COLOR = '#64748b'
const AFTER_EDIT_MS = 1_000

const setLines = StateEffect.define()

/** The editor's part: line decorations, replaced by each answer and moved along with edits. */
export const authorLines = StateField.define({
  create: () => Decoration.none,
  update (lines, transaction) {
    for (const effect of transaction.effects) if (effect.is(setLines)) return effect.value
    return transaction.docChanged ? lines.map(transaction.changes) : lines
  },
  provide: (field) => EditorView.decorations.from(field)
})

/** A stable hue for `name` (FNV-1a). */
function hueOf (name) {
  let hash = 0x811c9dc5
  for (let index = 0; index < name.length; index++) {
    hash = Math.imul(hash ^ name.charCodeAt(index), 0x01000193)
  }
  return (hash >>> 0) % 360
}

/**
 * `colorOf(name)` → `{edge, fill}`: a solid colour and a faint one for a line's background, for
 * the people present now (by the name they announce) and everyone else by their name's hue.
 */
export function authorColors (awareness) {
  const present = new Map()
  for (const state of awareness.getStates().values()) {
    const user = state?.user
    if (typeof user?.name === 'string' && /^#[0-9a-f]{6}$/i.test(user.color ?? '')) present.set(user.name, user.color)
  }
  // Two people may have picked the same presence colour: the first met keeps it, the others
  // get their name's hue, so that no two authors look alike.
  const chosen = new Map()
  const used = new Set()
  const pickFor = (name) => {
    const hex = name === null ? UNKNOWN_COLOR : name === SERVER_AUTHOR ? SERVER_COLOR : present.get(name)
    if (hex && !used.has(hex)) {
      used.add(hex)
      return { edge: hex, fill: `${hex}2e` }
    }
    const hue = hueOf(name ?? '')
    return { edge: `hsl(${hue} 65% 42%)`, fill: `hsl(${hue} 70% 50% / .16)` }
  }
  return (name) => {
    if (!chosen.has(name)) chosen.set(name, pickFor(name))
    return chosen.get(name)
  }
}

/** What the legend calls an author. */
export const authorLabel = (name) => name === null ? 'Unknown (before authorship was recorded)' : name === SERVER_AUTHOR ? 'Server (REST or a restore)' : name

function decorations (doc, runs, colorOf) {
  const builder = new RangeSetBuilder()
  const byAuthor = new Map()
  let next = 1 // the first line not decorated yet: runs are sorted and must not overlap
  for (const run of [...runs].sort((a, b) => a.from_line - b.from_line)) {
    let line = byAuthor.get(run.author)
    if (line === undefined) {
      const { edge, fill } = colorOf(run.author)
      line = Decoration.line({
        attributes: { style: `background-color: ${fill}; box-shadow: inset 3px 0 0 ${edge}`, title: authorLabel(run.author) }
      })
      byAuthor.set(run.author, line)
    }
    const last = Math.min(run.to_line, doc.lines)
    for (let number = Math.max(run.from_line, next); number <= last; number++) builder.add(doc.line(number).from, doc.line(number).from, line)
    next = Math.max(next, last + 1)
  }
  return builder.finish()
}

/** Colour the rows of a version's text (`rows[n - 1]` is line n) by the runs of its blame. */
export function colourRows (rows, runs, colorOf) {
  for (const run of runs) {
    const { edge, fill } = colorOf(run.author)
    for (let number = run.from_line; number <= Math.min(run.to_line, rows.length); number++) {
      const row = rows[number - 1]
      row.style.backgroundColor = fill
      row.style.boxShadow = `inset 3px 0 0 ${edge}`
      row.title = authorLabel(run.author)
    }
  }
}

function legendItem (author, lines, colorOf) {
  const item = document.createElement('li')
  const swatch = document.createElement('span')
  swatch.className = 'swatch'
  swatch.style.backgroundColor = colorOf(author.name).edge
  swatch.setAttribute('aria-hidden', 'true')
  const name = document.createElement('span')
  name.className = 'legend-name'
  name.textContent = authorLabel(author.name)
  if (author.user && author.user !== author.name) name.title = `${author.name} (${author.user})`
  else if (author.self_declared) name.title = 'The name this person gave themselves'
  const count = document.createElement('span')
  count.className = 'legend-count'
  count.textContent = lines === 1 ? '1 line' : `${lines} lines`
  item.append(swatch, name, count)
  item.dataset.author = author.name ?? ''
  return item
}

/**
 * Colour `view`'s lines by author while switched on (`set(true)`), with the legend in `legend`
 * (a list, and a note for when there is nothing to show). `request` is the room's REST call
 * (rest.js); `onError(error)` reports a failure, after which the colouring is off.
 */
export function authorship ({ view, ytext, awareness, request, textName, legend, onError }) {
  const list = legend.querySelector('ul')
  const note = legend.querySelector('p')
  let on = false
  let timer = 0
  let pending = null // the request under way
  let again = false // an edit came while it was under way

  function show (blame) {
    const colorOf = authorColors(awareness)
    view.dispatch({ effects: setLines.of(decorations(view.state.doc, blame.runs, colorOf)) })
    const lines = new Map()
    for (const run of blame.runs) lines.set(run.author, (lines.get(run.author) ?? 0) + run.to_line - run.from_line + 1)
    const seen = new Set()
    const authors = blame.authors.filter((author) => !seen.has(author.name) && seen.add(author.name))
    for (const name of lines.keys()) if (!seen.has(name)) authors.push({ name, user: null, self_declared: false })
    authors.sort((a, b) => (lines.get(b.name) ?? 0) - (lines.get(a.name) ?? 0))
    list.replaceChildren(...authors.map((author) => legendItem(author, lines.get(author.name) ?? 0, colorOf)))
    note.textContent = authors.length ? '' : 'Nobody has written anything yet.'
  }

  async function load () {
    if (pending) {
      again = true
      return pending
    }
    pending = request(`blame?name=${encodeURIComponent(textName)}`)
      .then((blame) => { if (on) show(blame) })
      .catch((error) => {
        if (!on) return
        set(false)
        onError(error)
      })
      .finally(() => { pending = null })
    await pending
    if (again && on) {
      again = false
      return load()
    }
  }

  function set (wanted) {
    on = wanted
    clearTimeout(timer)
    legend.hidden = !on
    if (on) {
      note.textContent = 'Loading who wrote what…'
      return load()
    }
    list.replaceChildren()
    view.dispatch({ effects: setLines.of(Decoration.none) })
  }

  ytext.observe(() => {
    if (!on) return
    clearTimeout(timer)
    timer = setTimeout(load, AFTER_EDIT_MS)
  })

  return {
    set,
    get on () { return on }
  }
}
