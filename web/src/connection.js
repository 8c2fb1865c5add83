// The connection badge (connected / reconnecting / offline / access denied), and the awareness
// fix-up every (re)connect needs.

import { DENIED_CLOSE_CODES } from './access.js'
import { showToast } from './toast.js'

// Close codes after which the stock provider gives up (4400-4499), in words.
const CLOSE_REASONS = { 4400: 'refused', 4401: 'no valid token', 4403: 'not allowed', 4404: 'no such room (deleted, or not made yet)', 4413: 'edit too large' }

/**
 * Make this page's cursor and its peers' show at once after a reconnect.
 *
 * The server dropped our awareness state when the old socket closed, and peers ignore the clock
 * the provider re-sends on open: bump it. Likewise forget the clocks of the peers this page
 * dropped on close, or the states the server greets us with (at clocks already seen) are ignored.
 */
export function reannounce (awareness) {
  for (const clientId of [...awareness.meta.keys()]) {
    if (clientId !== awareness.clientID && !awareness.states.has(clientId)) awareness.meta.delete(clientId)
  }
  awareness.setLocalState(awareness.getLocalState())
}

/**
 * Keep `badge` (with its text in `label`) in step with `provider`.
 *
 * When the server refuses access (close code 4401 or 4403, after which the provider stops
 * retrying), the badge says so and `onDenied({code, reason})` is called instead of a toast.
 * Returns `reconnect()`, which opens a new socket (e.g. with a new token), also after such a close.
 */
export function trackConnection (provider, badge, label, { onDenied = () => {} } = {}) {
  let everConnected = false
  let closedFor = null // why the server closed for good
  let denied = false

  function show () {
    let state, text
    if (denied) {
      [state, text] = ['denied', 'Access denied']
    } else if (closedFor !== null) {
      [state, text] = ['offline', `Disconnected: ${closedFor}`]
    } else if (provider.wsconnected && provider.synced) {
      [state, text] = ['connected', 'Connected']
    } else if (!navigator.onLine) {
      [state, text] = ['offline', 'Offline']
    } else if (everConnected) {
      [state, text] = ['reconnecting', 'Reconnecting…']
    } else {
      [state, text] = ['connecting', 'Connecting…']
    }
    badge.dataset.state = state
    label.textContent = text
  }

  provider.on('status', ({ status }) => {
    if (status === 'connected') {
      everConnected = true
      reannounce(provider.awareness)
    }
    show()
  })
  provider.on('sync', show)
  provider.on('closed', ({ code, reason }) => {
    closedFor = CLOSE_REASONS[code] ?? (reason || `code ${code}`)
    denied = DENIED_CLOSE_CODES.has(code)
    show()
    if (denied) onDenied({ code, reason })
    else showToast(`The server closed the connection: ${closedFor}`)
  })
  window.addEventListener('offline', show)
  window.addEventListener('online', () => {
    show()
    if (closedFor === null) provider.connect() // now, rather than at the next backoff step
  })
  show()

  return {
    reconnect () {
      closedFor = null
      denied = false
      everConnected = false
      provider.disconnect() // an open socket keeps the token it connected with
      provider.connect()
      show()
    }
  }
}
