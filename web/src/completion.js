// Code completion from the server (`POST api/rooms/{room}/complete`, docs/completion.md): a
// CodeMirror completion source that asks as the user types an identifier or a `.`, and a popup
// with an icon per kind.
//
// CodeMirror runs the source only for this page's own typing (transactions tagged
// `input.type`), never for remote edits, and waits TYPING_DELAY after the last keystroke before
// it asks. A request is cancelled (AbortController) when CodeMirror gives up on it (the cursor
// moved, the popup closed, a remote edit arrived meanwhile) or a newer one starts. Failures are
// quiet: no popup, nothing logged; the next keystroke asks again.

import { autocompletion } from '@codemirror/autocomplete'
import { syntaxTree } from '@codemirror/language'
import { EditorView } from '@codemirror/view'
import * as Y from 'yjs'

/** Milliseconds of no typing before the server is asked (CodeMirror's typing debounce). */
export const TYPING_DELAY = 120
/** Keys reach the popup only once it has been open this long, so a fast Enter stays a newline. */
export const INTERACTION_DELAY = 75
/** After `completion_unavailable` (turned off, or restarting): the pause before asking again. */
const UNAVAILABLE_PAUSE_MS = 15_000

// What counts as a word, as the server's generic provider counts it (Python's `\w`, plus `$` in
// JavaScript and `-` in CSS and HTML): the range the server replaces must be this word.
const WORD_CHARS = { javascript: '$', typescript: '$', css: '-', html: '-' }
const wordClass = (language) => `[\\p{L}\\p{N}_${WORD_CHARS[language] ?? ''}]`

// Syntax nodes where typing is prose, not code: no popup unless asked for (Ctrl+Space).
const PROSE_NODE = /Comment|^(String|RawString|StringLiteral|TextBlock|FormatString|TemplateString|SystemLibString)$/

/**
 * The autocompletion extension for one room: CodeMirror's popup, fed by the server only.
 *
 * `completeUrl` is the room's endpoint, `doc` the room's Y.Doc (its state vector goes with each
 * request, so the server waits for the keystrokes this page has), `isConnected()` whether the
 * server can have those keystrokes at all, `language()` the room's language id, `headers()` the
 * request's extra headers (the access token), `onDenied(status, detail)` what to do on 401 or 403.
 */
export function serverCompletion ({ completeUrl, doc, isConnected, language, headers = () => ({}), onDenied = () => {} }) {
  let inFlight = null // the AbortController of the newest request
  let pausedUntil = 0

  async function source (context) {
    const word = typedWord(context, language())
    if (!context.explicit && !worthAsking(context, word)) return null
    if (!isConnected() || Date.now() < pausedUntil) return null
    inFlight?.abort() // a newer question makes the older answer useless
    const controller = new AbortController()
    inFlight = controller
    context.addEventListener('abort', () => controller.abort())
    let answer
    try {
      const response = await fetch(completeUrl, {
        method: 'POST',
        headers: { ...headers(), 'content-type': 'application/json' },
        body: JSON.stringify({ offset: context.pos, state_vector: base64(Y.encodeStateVector(doc)) }),
        signal: controller.signal
      })
      if (!response.ok) {
        // 409 document_behind, 503 completion_busy: nothing this time. Turned off: stop asking.
        // 401, 403 (the token expired meanwhile): the page says so, and nothing this time.
        const failure = await response.json().catch(() => null)
        if (response.status === 401 || response.status === 403) onDenied(response.status, failure?.detail)
        if (failure?.error === 'completion_unavailable') pausedUntil = Date.now() + UNAVAILABLE_PAUSE_MS
        return null
      }
      answer = await response.json()
    } catch {
      return null // aborted, or the network failed: the browser has said so already
    } finally {
      if (inFlight === controller) inFlight = null
    }
    // The server completed the word at the cursor in its copy of the text. If that is not the
    // word in this state (its copy had an edit this page has not seen yet), the range is not ours.
    if (context.aborted || answer.to !== context.pos || answer.from !== word.from) return null
    if (answer.items.length === 0) return null
    return {
      from: answer.from,
      to: answer.to,
      options: answer.items.map((item, rank) => ({
        label: item.label,
        type: item.kind, // a CodeMirror type: its icon
        detail: item.detail ?? undefined,
        apply: item.insert_text,
        boost: Math.max(-99, 50 - rank) // the server's order among equally good matches
      })),
      // Filter locally while the word grows, unless the answer was partial: then ask again.
      validFor: answer.partial ? undefined : new RegExp(`^${wordClass(language())}*$`, 'u')
    }
  }

  return [
    autocompletion({
      override: [source],
      activateOnTypingDelay: TYPING_DELAY,
      interactionDelay: INTERACTION_DELAY,
      icons: true
    }),
    popupTheme
  ]
}

/** The word (possibly empty) that ends at the cursor: what the server will replace. */
function typedWord (context, language) {
  const match = context.matchBefore(new RegExp(`${wordClass(language)}*`, 'u'))
  return match ?? { from: context.pos, to: context.pos, text: '' }
}

/** Whether typing has reached a place worth a request: a name, or a member after a dot. */
function worthAsking (context, word) {
  const node = syntaxTree(context.state).resolveInner(context.pos, -1)
  if (PROSE_NODE.test(node.name)) return false
  if (word.text) return !/^\p{N}/u.test(word.text) // not a number
  const before = context.state.sliceDoc(Math.max(0, context.pos - 64), context.pos)
  // A member after a dot; not a spread or range (`..`), nor a number being typed (`= 1.`).
  return before.endsWith('.') && !before.endsWith('..') && !/(?:^|[^\p{L}\p{N}_$])\p{N}+\.$/u.test(before)
}

function base64 (bytes) {
  let binary = ''
  for (const byte of bytes) binary += String.fromCharCode(byte)
  return btoa(binary)
}

// -- the popup ------------------------------------------------------------------------------------

// One badge per kind the server sends (and the other CodeMirror types): glyph, ink, fill.
const KINDS = {
  function: ['ƒ', '#6d28d9', '#f1eafe'],
  method: ['m', '#6d28d9', '#f1eafe'],
  class: ['C', '#b45309', '#fdf1e1'],
  interface: ['I', '#b45309', '#fdf1e1'],
  type: ['T', '#b45309', '#fdf1e1'],
  enum: ['E', '#b45309', '#fdf1e1'],
  variable: ['x', '#1d4ed8', '#e8effd'],
  constant: ['π', '#0f766e', '#e3f5f2'],
  property: ['p', '#15803d', '#e8f6ed'],
  namespace: ['{}', '#a21caf', '#fbe9fb'],
  keyword: ['kw', '#475569', '#eef1f5'],
  text: ['abc', '#64748b', '#f1f3f6']
}

const iconRules = Object.fromEntries(Object.entries(KINDS).map(([kind, [glyph, ink, fill]]) => [
  `.cm-completionIcon.cm-completionIcon-${kind}`,
  {
    color: ink,
    backgroundColor: fill,
    fontSize: glyph.length > 1 ? '9px' : '12px',
    '&:after': { content: JSON.stringify(glyph), fontSize: 'inherit', verticalAlign: 'baseline' }
  }
]))

const popupTheme = EditorView.theme({
  '.cm-tooltip.cm-tooltip-autocomplete': {
    border: '1px solid var(--border)',
    borderRadius: '8px',
    backgroundColor: 'var(--panel)',
    boxShadow: '0 6px 24px rgba(28, 32, 41, 0.14)',
    padding: '4px',
    overflow: 'hidden'
  },
  '.cm-tooltip.cm-tooltip-autocomplete > ul': {
    fontFamily: 'var(--mono)',
    fontSize: '13px',
    minWidth: '220px',
    maxWidth: 'min(560px, calc(100vw - 24px))',
    maxHeight: '17em'
  },
  '.cm-tooltip.cm-tooltip-autocomplete > ul > li': {
    display: 'flex',
    alignItems: 'center',
    gap: '8px',
    padding: '3px 8px 3px 4px',
    borderRadius: '5px',
    lineHeight: '1.45'
  },
  '.cm-tooltip.cm-tooltip-autocomplete > ul > li[aria-selected]': {
    backgroundColor: 'var(--accent-soft)',
    color: 'var(--text)',
    boxShadow: 'inset 2px 0 0 var(--accent)'
  },
  '.cm-tooltip.cm-tooltip-autocomplete-disabled > ul > li[aria-selected]': {
    backgroundColor: 'var(--active-line)'
  },
  '.cm-completionIcon': {
    flex: 'none',
    width: '20px',
    height: '18px',
    padding: '0',
    borderRadius: '4px',
    opacity: '1',
    fontFamily: 'var(--ui)',
    fontWeight: '700',
    lineHeight: '18px',
    textAlign: 'center',
    boxSizing: 'border-box'
  },
  '.cm-completionLabel': { flex: '0 1 auto', overflow: 'hidden', textOverflow: 'ellipsis' },
  '.cm-completionMatchedText': { textDecoration: 'none', fontWeight: '700', color: 'var(--accent-strong)' },
  '.cm-completionDetail': {
    flex: 'none',
    marginLeft: 'auto',
    paddingLeft: '16px',
    fontFamily: 'var(--ui)',
    fontSize: '12px',
    fontStyle: 'normal',
    color: 'var(--muted)'
  },
  ...iconRules
})
