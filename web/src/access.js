// Access tokens on the page: where the token comes from, what it says, how it is sent, and the
// small form that asks for one when the server says no.
//
// A server with COLLAB_AUTH_SECRET wants a token (a JWT) on every WebSocket and REST call. It
// reaches the page as a `#token=...` fragment (fragments never reach the server or its logs), is
// remembered in localStorage, and the fragment is removed from the address bar at once. Without a
// token the page sends exactly what it sends to an open server.
//
// A token for every room ("room": "*") is kept under one key and a token for one room under a key
// of that room's, so opening a colleague's link to one room never replaces a wider token: the
// room page uses its room's token if there is one, else the wide one; the lobby the wide one, or
// else the one-room token saved last (which lists that room).
//
// The page reads the token's claims (room, role, exp) without checking its signature: only to
// shape the interface (read-only for a viewer, which tokens a share link may carry). The server
// checks every request; nothing here grants anything.

const TOKEN_KEY = 'collab.token' // a token for every room; `collab.token.<room>` for one room's
const LAST_ROOM_KEY = 'collab.token-room' // the room whose token was saved last
const FRAGMENT_KEY = 'token'

// Close codes and HTTP statuses that mean "no access", and what to say about them.
export const DENIED_CLOSE_CODES = new Set([4401, 4403])
export const DENIED_STATUSES = new Set([401, 403])

/**
 * The storage key for `token`: the wide one for a token for every room, its room's for one
 * room's; null for a token the page cannot read (cut short in a chat, say), which is then used by
 * this page alone and never replaces a remembered one.
 */
function keyFor (token) {
  const room = tokenClaims(token)?.room
  if (room === '*') return TOKEN_KEY
  return typeof room === 'string' && room ? `${TOKEN_KEY}.${room}` : null
}

function remove (key) {
  try {
    localStorage.removeItem(key)
  } catch {
    // storage disabled: nothing was kept
  }
}

function read (key) {
  try {
    return localStorage.getItem(key)?.trim() || null
  } catch {
    return null // storage disabled: the token lasts as long as the page
  }
}

/**
 * The token this page uses: a `#token=` fragment (remembered under its scope, and removed from
 * the address bar), else the one remembered for `roomId` (the room page) or for every room;
 * null when there is none.
 */
export function takeToken (roomId = null) {
  const fragment = new URLSearchParams(location.hash.slice(1))
  if (fragment.has(FRAGMENT_KEY)) {
    const token = fragment.get(FRAGMENT_KEY).trim()
    fragment.delete(FRAGMENT_KEY)
    const rest = fragment.toString()
    history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`)
    if (token) return saveToken(token, roomId)
  }
  if (roomId !== null) return read(`${TOKEN_KEY}.${roomId}`) || read(TOKEN_KEY)
  const lastRoom = read(LAST_ROOM_KEY)
  return read(TOKEN_KEY) || (lastRoom && read(`${TOKEN_KEY}.${lastRoom}`))
}

/**
 * Remember `token` for the pages it opens; returns it trimmed (null when blank). A token for
 * every room given on the page of `roomId` also drops the token remembered for that room alone,
 * which would otherwise hide it there from now on.
 */
export function saveToken (token, roomId = null) {
  const cleaned = token.trim()
  if (!cleaned) return null
  const key = keyFor(cleaned)
  if (roomId !== null && key === TOKEN_KEY) remove(`${TOKEN_KEY}.${roomId}`)
  if (key === null) return cleaned
  try {
    localStorage.setItem(key, cleaned)
    if (key !== TOKEN_KEY) localStorage.setItem(LAST_ROOM_KEY, key.slice(TOKEN_KEY.length + 1))
  } catch {
    // storage disabled or full: the page still uses the token until it is closed
  }
  return cleaned
}

/** Forget `token` wherever it is remembered: the server said it is expired or not valid. */
export function forgetToken (token) {
  for (const key of [TOKEN_KEY, keyFor(token)]) {
    if (key !== null && read(key) === token) remove(key)
  }
}

/** Whether a link to `roomId` may carry `token`: one room's, below admin (no wider rights). */
export function shareable (token, roomId) {
  const claims = tokenClaims(token)
  return claims?.room === roomId && claims.role !== 'admin'
}

/** A token's claims `{room, role, exp}` as the page reads them (unverified), or null. */
export function tokenClaims (token) {
  const payload = token?.split('.')[1]
  if (!payload) return null
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(payload.length / 4) * 4, '=')
    const json = new TextDecoder().decode(Uint8Array.from(atob(base64), (char) => char.charCodeAt(0)))
    const claims = JSON.parse(json)
    return claims !== null && typeof claims === 'object' ? claims : null
  } catch {
    return null // not a JWT: the server will say so
  }
}

/** The role a token claims ('viewer', 'editor', 'admin'), or null. */
export function tokenRole (token) {
  const role = tokenClaims(token)?.role
  return typeof role === 'string' ? role : null
}

/** `headers` plus `Authorization: Bearer` when there is a token; `headers` alone when not. */
export function withToken (token, headers = {}) {
  return token ? { ...headers, authorization: `Bearer ${token}` } : headers
}

/**
 * Why access was refused, in words, from a close code (4401, 4403) or an HTTP status (401, 403),
 * and whether the page had a token at all. `detail` is what the server said, if anything; `place`
 * what needs the token.
 */
export function describeDenial (code, hadToken, detail = '', place = 'this room') {
  if (!hadToken) return `Access denied: ${place} needs a token.`
  const text = code === 4403 || code === 403
    ? 'Access denied: your token does not allow this'
    : 'Access denied: token expired or invalid'
  return detail ? `${text} (${detail}).` : `${text}.`
}

/**
 * The panel that asks for a token: its message, and a form (label, input, button) whose token
 * is remembered and handed to `onToken`. `show(text)` opens it, `hide()` closes it.
 */
export function tokenPanel (panel, onToken, roomId = null) {
  const form = panel.querySelector('form')
  const input = form.querySelector('input')
  const message = panel.querySelector('.access-message')
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    const token = saveToken(input.value, roomId)
    if (token === null) {
      input.focus()
      return
    }
    input.value = ''
    panel.hidden = true
    onToken(token)
  })
  return {
    input,
    show (text) {
      message.textContent = text
      panel.hidden = false
    },
    hide () {
      panel.hidden = true
    },
    get shown () {
      return !panel.hidden
    }
  }
}
