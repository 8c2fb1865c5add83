// One version of the room shown read-only in the history panel, beside the editor: its changes
// since (the server's unified diff, lines coloured as added or removed) or its text (coloured by
// author while "Colour by author" is on), and for editors "Restore…" with a confirmation.
// Rendering stops at MAX_SHOWN_LINES lines, and says so.

import { authorColors, colourRows } from './blame.js'
import { showToast } from './toast.js'

const MAX_SHOWN_LINES = 5_000

function element (tag, className, text) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

/** The rows of a unified diff: [kind, old line number, new line number, marker, text]. */
function diffRows (diff) {
  const rows = []
  let oldLine = 0
  let newLine = 0
  for (const line of diff.split('\n')) {
    if (line.startsWith('--- ') || line.startsWith('+++ ') || line === '') continue
    const hunk = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(line)
    if (hunk) {
      oldLine = Number(hunk[1])
      newLine = Number(hunk[2])
      rows.push(['hunk', '', '', '', line])
    } else if (line[0] === '-') {
      rows.push(['removed', oldLine++, '', '−', line.slice(1)])
    } else if (line[0] === '+') {
      rows.push(['added', '', newLine++, '+', line.slice(1)])
    } else if (line[0] === '\\') {
      rows.push(['note', '', '', '', line.slice(2)])
    } else {
      rows.push(['same', oldLine++, newLine++, '', line.slice(1)])
    }
  }
  return rows
}

const textRows = (text) => text.split('\n').map((line, index) => ['same', '', index + 1, '', line])

/** Show `rows` in `body`; returns how many were left out. */
function renderRows (body, rows) {
  const shown = rows.slice(0, MAX_SHOWN_LINES)
  body.replaceChildren(...shown.map(([kind, oldLine, newLine, marker, text]) => {
    const row = element('div', `row ${kind}`)
    row.append(element('span', 'ln', String(oldLine)), element('span', 'ln', String(newLine)),
      element('span', 'mark', marker), element('span', 'code', text))
    return row
  }))
  return rows.length - shown.length
}

/**
 * The preview in `section`. `request` calls the room's REST API (rest.js); `coloured()` says
 * whether "Colour by author" is on; `onRestored()` follows a restore, `onClosed(id)` the close
 * button.
 */
export function versionPreview ({ section, request, textName, awareness, coloured, onRestored, onClosed }) {
  const $ = (id) => document.getElementById(id)
  const title = $('history-preview-title')
  const note = $('history-preview-note')
  const body = $('history-preview-body')
  const modeButtons = [...section.querySelectorAll('[data-mode]')]
  const restoreButton = $('history-restore')
  const confirmBox = $('history-confirm')
  const confirmText = $('history-confirm-text')
  const confirmButton = $('history-confirm-restore')
  const query = `?name=${encodeURIComponent(textName)}`

  let shown = null // the version's id
  let mode = 'diff' // 'diff' (its changes since) or 'text' (its text)
  let ticket = 0 // the answer still wanted: a newer request outdates the ones before

  function failed (what, error) {
    console.warn('history: %s failed', what, error)
    showToast(`${what} failed: ${error.message}`)
  }

  function setMode (wanted) {
    mode = wanted
    for (const choice of modeButtons) choice.setAttribute('aria-pressed', String(choice.dataset.mode === mode))
  }

  /** Who wrote the lines of version `id`, or null (its text stays uncoloured) on a failure. */
  async function authorsOf (id) {
    try {
      return await request(`versions/${id}/blame${query}`)
    } catch (error) {
      console.warn('history: no authors for version %d', id, error)
      return null
    }
  }

  async function load () {
    if (shown === null) return
    const id = shown
    const wanted = mode
    const mine = ++ticket
    body.setAttribute('aria-busy', 'true')
    try {
      let rows
      let what
      let authors = null
      if (wanted === 'diff') {
        rows = diffRows(await request(`versions/${id}/diff/current${query}`, { as: 'text' }))
        what = rows.length ? `Changes since version #${id}: − as it was then, + as it is now.` : `No changes since version #${id}: it is the text now.`
      } else {
        let text
        ;[text, authors] = await Promise.all([request(`versions/${id}/text${query}`, { as: 'text' }), coloured() ? authorsOf(id) : null])
        rows = textRows(text)
        what = `The text of version #${id}, read-only${authors ? ', coloured by author' : ''}.`
      }
      if (mine !== ticket) return
      const left = renderRows(body, rows)
      if (authors) colourRows(body.children, authors.runs, authorColors(awareness))
      body.dataset.mode = wanted
      body.setAttribute('aria-label', wanted === 'diff' ? `Changes since version ${id}` : `Text of version ${id}`)
      note.textContent = left ? `${what} The first ${MAX_SHOWN_LINES} lines are shown (${left} more).` : what
    } catch (error) {
      if (mine !== ticket) return
      if (wanted === 'diff' && error.status === 413) { // too large to compare: its text, then
        setMode('text')
        showToast('Too large to compare: showing the version\'s text')
        return load()
      }
      body.replaceChildren()
      note.textContent = `Could not show version #${id}.`
      failed(`Showing version #${id}`, error)
    } finally {
      if (mine === ticket) body.removeAttribute('aria-busy')
    }
  }

  for (const choice of modeButtons) {
    choice.addEventListener('click', () => {
      if (choice.dataset.mode === mode) return
      setMode(choice.dataset.mode)
      load()
    })
  }

  $('history-preview-close').addEventListener('click', () => {
    const id = shown
    shown = null
    ++ticket
    confirmBox.hidden = true
    section.hidden = true
    onClosed(id)
  })

  // -- restore --------------------------------------------------------------------------------

  function cancelRestore () {
    confirmBox.hidden = true
    restoreButton.focus()
  }

  restoreButton.addEventListener('click', () => {
    confirmText.textContent = `Replace the text for everyone with version #${shown}? The text as it is now is kept as a version first.`
    confirmBox.hidden = false
    confirmButton.focus()
  })
  $('history-confirm-cancel').addEventListener('click', cancelRestore)
  confirmBox.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return
    event.preventDefault() // and the panel stays open
    cancelRestore()
  })

  confirmButton.addEventListener('click', async () => {
    const id = shown
    confirmButton.disabled = true
    try {
      const { before } = await request(`versions/${id}/restore${query}`, { method: 'POST' })
      showToast(`Restored version #${id}; the text before is version #${before.id}`)
      confirmBox.hidden = true
      restoreButton.focus()
      await Promise.all([onRestored(), load()])
    } catch (error) {
      failed(`Restoring version #${id}`, error)
    } finally {
      confirmButton.disabled = false
    }
  })

  return {
    /** Show version `id` (`label` is what the list calls it). */
    show (id, label) {
      shown = id
      title.textContent = `Version #${id} · ${label}`
      confirmBox.hidden = true
      section.hidden = false
      return load()
    },
    /** Ask again: after an edit (its changes since) or a switch of the author colours (its text). */
    reload ({ diffOnly = false } = {}) {
      if (shown !== null && (!diffOnly || mode === 'diff')) load()
    },
    /** "Restore…" only for editors. */
    setEditable (canEdit) {
      restoreButton.hidden = !canEdit
      if (!canEdit) confirmBox.hidden = true
    },
    get shown () { return shown },
    get mode () { return mode }
  }
}
