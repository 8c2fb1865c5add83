// The room page: CodeMirror 6 bound to the room's Y.Text `codemirror` through y-codemirror.next,
// synced with the stock y-websocket provider; the room's language lives in the shared Y.Map
// `meta`, so every peer switches together. On a server with access tokens the page sends its
// token (access.js), is read-only for a viewer, and asks for a token when the server says no.
// The history panel (history.js) lists the room's versions, shows and restores them, and colours
// the lines by author (blame.js).

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { yCollab, yRemoteSelections, yRemoteSelectionsTheme, yUndoManagerKeymap } from 'y-codemirror.next'
import { Compartment, EditorState } from '@codemirror/state'
import {
  EditorView, crosshairCursor, drawSelection, dropCursor, highlightActiveLine,
  highlightActiveLineGutter, highlightSpecialChars, keymap, lineNumbers, rectangularSelection
} from '@codemirror/view'
import { defaultKeymap, indentWithTab } from '@codemirror/commands'
import {
  bracketMatching, defaultHighlightStyle, foldGutter, foldKeymap, indentOnInput, syntaxHighlighting
} from '@codemirror/language'
import { highlightSelectionMatches, searchKeymap } from '@codemirror/search'
import { closeBrackets, closeBracketsKeymap } from '@codemirror/autocomplete'
import {
  DENIED_STATUSES, describeDenial, forgetToken, shareable, takeToken, tokenPanel, tokenRole, withToken
} from './access.js'
import { authorLines } from './blame.js'
import { INTERACTION_DELAY, serverCompletion } from './completion.js'
import { trackConnection } from './connection.js'
import { historyPanel } from './history.js'
import { loadIdentity } from './identity.js'
import { DEFAULT_LANGUAGE, fillLanguageSelect, languageById } from './languages.js'
import { bindNameField, followRenames, trackPeople } from './people.js'
import { roomApi } from './rest.js'
import { showToast } from './toast.js'

const TEXT_NAME = 'codemirror' // the Y.Text the server's REST API reads and writes
const META_MAP = 'meta'
const LANGUAGE_KEY = 'language'

const $ = (id) => document.getElementById(id)

// -- where we are ---------------------------------------------------------------------------------

// Everything is relative to this page, so the editor works behind a proxy, under a path prefix,
// and over https (wss) alike.
const roomId = decodeURIComponent(location.pathname.split('/').pop())
const serverRoot = new URL('..', location.href)
const websocketBase = serverRoot.href.replace(/^http/, 'ws') + 'ws'

// The access token, if any (from a #token= fragment or remembered); none: today's requests.
let token = takeToken(roomId)

// -- the shared document --------------------------------------------------------------------------

const doc = new Y.Doc()
const ytext = doc.getText(TEXT_NAME)
const meta = doc.getMap(META_MAP)
const provider = new WebsocketProvider(websocketBase, roomId, doc, token ? { params: { token } } : {})
const awareness = provider.awareness
const identity = loadIdentity()
awareness.setLocalStateField('user', { ...identity })
// Tracks only this page's own edits (y-codemirror.next adds its origin): undo is per user.
const undoManager = new Y.UndoManager(ytext)

// -- the editor -----------------------------------------------------------------------------------

const languageSlot = new Compartment()
// Remote carets sit in their own slot so that they can be rebuilt when someone renames
// themselves: y-codemirror.next's caret widget compares colours only and keeps a stale name.
const caretSlot = new Compartment()
const carets = [yRemoteSelectionsTheme, yRemoteSelections]
const collab = yCollab(ytext, awareness, { undoManager })
  .filter((extension) => !carets.includes(extension))
// Editing on or off: off for a viewer's token and while access is denied. The content stays
// focusable (tabindex) so that the caret still moves with the keyboard and shows to the others.
const accessSlot = new Compartment()
const readOnly = [
  EditorState.readOnly.of(true),
  EditorView.editable.of(false),
  EditorView.contentAttributes.of({ tabindex: '0', 'aria-readonly': 'true' })
]

const theme = EditorView.theme({
  '&': { height: '100%', fontSize: '14px', backgroundColor: 'var(--editor-bg)' },
  '&.cm-focused': { outline: '2px solid var(--focus)', outlineOffset: '-2px' },
  '.cm-scroller': { fontFamily: 'var(--mono)', lineHeight: '1.6' },
  // Room above the first line for the name label of a caret there.
  '.cm-content': { padding: '18px 0 12px' },
  '.cm-gutters': { backgroundColor: 'var(--gutter-bg)', color: 'var(--muted)', borderRight: '1px solid var(--border)' },
  '.cm-activeLine': { backgroundColor: 'var(--active-line)' },
  '.cm-activeLineGutter': { backgroundColor: 'var(--active-line)', color: 'var(--text)' },
  '.cm-ySelectionCaret': { borderLeftWidth: '2px', borderRightWidth: '0', marginLeft: '-1px', marginRight: '-1px' },
  '.cm-ySelectionCaretDot': { display: 'none' },
  '.cm-ySelectionInfo': {
    opacity: 1,
    top: '-1.45em',
    left: '-2px',
    padding: '1px 6px',
    borderRadius: '4px 4px 4px 0',
    fontFamily: 'var(--ui)',
    fontSize: '11px',
    fontWeight: '600',
    lineHeight: '1.4',
    pointerEvents: 'none'
  }
})

const view = new EditorView({
  parent: $('editor'),
  state: EditorState.create({
    doc: ytext.toString(),
    extensions: [
      lineNumbers(),
      highlightActiveLineGutter(),
      highlightSpecialChars(),
      foldGutter(),
      drawSelection(),
      dropCursor(),
      EditorState.allowMultipleSelections.of(true),
      indentOnInput(),
      syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
      bracketMatching(),
      closeBrackets(),
      serverCompletion({
        completeUrl: new URL(`api/rooms/${encodeURIComponent(roomId)}/complete`, serverRoot),
        doc,
        isConnected: () => provider.wsconnected && provider.synced,
        language: () => languageById(meta.get(LANGUAGE_KEY)).id,
        headers: () => withToken(token),
        onDenied: (status, detail) => denyAccess(status, detail)
      }),
      rectangularSelection(),
      crosshairCursor(),
      highlightActiveLine(),
      highlightSelectionMatches(),
      keymap.of([
        ...closeBracketsKeymap,
        ...yUndoManagerKeymap,
        ...defaultKeymap,
        ...searchKeymap,
        ...foldKeymap,
        indentWithTab // Escape, then Tab, moves focus out of the editor
      ]),
      languageSlot.of([]),
      accessSlot.of([]),
      collab,
      caretSlot.of(carets),
      authorLines,
      theme,
      EditorView.contentAttributes.of({ 'aria-label': 'Code', 'aria-describedby': 'editor-help' }),
      EditorView.updateListener.of((update) => {
        if (update.selectionSet || update.docChanged) showCursorPosition(update.state)
      })
    ]
  })
})

function showCursorPosition (state) {
  const head = state.selection.main.head
  const line = state.doc.lineAt(head)
  $('cursor-position').textContent = `Ln ${line.number}, Col ${head - line.from + 1}`
}

$('skip-link').addEventListener('click', (event) => {
  event.preventDefault()
  view.focus()
})

// -- the room's language (meta.language) ----------------------------------------------------------

const languageSelect = $('language')
fillLanguageSelect(languageSelect, DEFAULT_LANGUAGE)
let shownLanguage = null
let languageRequest = 0

async function showLanguage (id) {
  const language = languageById(id)
  languageSelect.value = language.id
  if (language.id === shownLanguage) return
  shownLanguage = language.id
  const request = ++languageRequest
  let support
  try {
    support = await language.load()
  } catch (error) {
    console.error('could not load the %s grammar', language.id, error)
    showToast(`Could not load the ${language.label} grammar`)
    if (request === languageRequest) shownLanguage = null // try again on the next switch
    return
  }
  if (request !== languageRequest) return // another switch came in meanwhile
  view.dispatch({ effects: languageSlot.reconfigure(support) })
  view.dom.dataset.language = language.id
  $('status-language').textContent = language.label
}

meta.observe(() => showLanguage(meta.get(LANGUAGE_KEY)))
languageSelect.addEventListener('change', () => {
  meta.set(LANGUAGE_KEY, languageSelect.value)
})
showLanguage(meta.get(LANGUAGE_KEY))

// -- the room's versions (before access: a viewer's page hides Save and Restore) ------------------

const versions = historyPanel({
  panel: $('history'),
  button: $('history-button'),
  request: roomApi({ roomId, serverRoot, token: () => token, onDenied: (status, detail) => denyAccess(status, detail) }),
  textName: TEXT_NAME,
  ytext,
  view,
  awareness
})

// -- access: edit, view only, or denied -----------------------------------------------------------

let access = 'edit'

/** Switch the page to `mode`: 'edit', 'view' (a viewer's token) or 'denied'. */
function showAccess (mode) {
  access = mode
  view.dispatch({ effects: accessSlot.reconfigure(mode === 'edit' ? [] : readOnly) })
  document.body.dataset.access = mode
  $('read-only').hidden = mode !== 'view'
  // The language lives in the document: a change the server would drop must not look made.
  languageSelect.disabled = mode !== 'edit'
  versions.setEditable(mode === 'edit')
}

const accessForToken = () => tokenRole(token) === 'viewer' ? 'view' : 'edit'

const tokenForm = tokenPanel($('access'), (newToken) => {
  token = newToken
  provider.params = { token }
  showAccess(accessForToken())
  connection.reconnect() // with the new token, even if the socket was still open
  // Into the editor once the token works; a refusal puts the focus back into the token field.
  provider.once('sync', () => {
    if (document.activeElement === document.body) view.focus()
  })
}, roomId)

/**
 * The server said no (close code 4401/4403, or HTTP 401/403): say so and ask for a token. Only a
 * refused socket makes the editor read-only: an open one stays writable when its token expires
 * (the server checks tokens when a socket connects), and only REST calls then answer 401.
 */
function denyAccess (code, detail, { socket = false } = {}) {
  if (socket) showAccess('denied')
  if (token !== null && (code === 4401 || code === 401)) forgetToken(token)
  tokenForm.show(describeDenial(code, token !== null, detail))
  const focused = document.activeElement
  if (focused === null || focused === document.body) tokenForm.input.focus()
}

const connection = trackConnection(provider, $('connection'), $('connection-label'), {
  onDenied: ({ code, reason }) => denyAccess(code, reason, { socket: true })
})
showAccess(accessForToken())

// -- people, your name ----------------------------------------------------------------------------

trackPeople(awareness, $('people'), $('people-count'))
followRenames(awareness, () => {
  view.dispatch({ effects: caretSlot.reconfigure([]) })
  view.dispatch({ effects: caretSlot.reconfigure(carets) })
  view.dispatch({}) // the new plugin draws on its first update
})
bindNameField($('user-name'), identity, awareness, () => view.focus())

// -- undo, redo, share, download ------------------------------------------------------------------

const undoButton = $('undo')
const redoButton = $('redo')

function showUndoState () {
  undoButton.setAttribute('aria-disabled', String(undoManager.undoStack.length === 0))
  redoButton.setAttribute('aria-disabled', String(undoManager.redoStack.length === 0))
}

for (const event of ['stack-item-added', 'stack-item-popped', 'stack-cleared']) {
  undoManager.on(event, showUndoState)
}
showUndoState()
undoButton.addEventListener('click', () => undoManager.undo())
redoButton.addEventListener('click', () => undoManager.redo())

async function copyText (text) {
  try {
    await navigator.clipboard.writeText(text)
    return true
  } catch {
    // No clipboard API (plain http on a LAN address): the old way.
    const field = document.createElement('textarea')
    field.value = text
    field.setAttribute('readonly', '')
    field.className = 'visually-hidden'
    document.body.append(field)
    field.select()
    const copied = document.execCommand('copy')
    field.remove()
    return copied
  }
}

/**
 * This room's address; with the page's token only when it is for this room alone and below admin,
 * so a shared link never carries rights to other rooms or to deleting.
 */
function shareLink () {
  const link = new URL(location.pathname, location.href)
  if (token && shareable(token, roomId)) link.hash = new URLSearchParams({ token }).toString()
  return link.href
}

function shareNote (link) {
  if (!token) return 'send it to whoever should join'
  if (new URL(link).hash) return `it carries your ${tokenRole(token) ?? 'access'} token, so send it only to whoever should have it`
  const why = tokenRole(token) === 'admin' ? 'admin token' : 'token for every room'
  return `without your ${why}: whoever joins needs a token of their own`
}

$('share').addEventListener('click', async () => {
  const link = shareLink()
  showToast(await copyText(link) ? `Link copied: ${shareNote(link)}` : `Copy this link: ${link}`)
})

$('download').addEventListener('click', () => {
  const language = languageById(meta.get(LANGUAGE_KEY))
  const blob = new Blob([ytext.toString()], { type: 'text/plain;charset=utf-8' })
  const link = document.createElement('a')
  link.href = URL.createObjectURL(blob)
  link.download = `${roomId}.${language.extension}`
  document.body.append(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000)
})

// -- the room's name ------------------------------------------------------------------------------

async function showRoomName () {
  let name = roomId
  try {
    const response = await fetch(new URL(`api/rooms/${encodeURIComponent(roomId)}`, serverRoot), { headers: withToken(token) })
    if (response.ok) name = (await response.json()).name
    else if (DENIED_STATUSES.has(response.status)) denyAccess(response.status, (await response.json().catch(() => null))?.detail)
  } catch (error) {
    console.warn('room details unavailable', error)
  }
  $('room-name').textContent = name
  document.title = `${name} · Collab`
}

$('room-name').textContent = roomId
// After the first sync: joining creates a room that nobody created over REST.
provider.once('sync', showRoomName)

// For the browser tests, and for anyone poking at a room from the console.
window.collab = {
  doc,
  ytext,
  meta,
  provider,
  awareness,
  undoManager,
  view,
  versions,
  completion: { interactionDelay: INTERACTION_DELAY },
  get access () { return access } // 'edit', 'view' or 'denied'
}
