// The lobby: create a room, join one by link, and see the rooms with who is in them right now.
// On a server with access tokens it sends the page's token (access.js), lists the rooms that
// token covers, and asks for a token when the server says no.

import { DENIED_STATUSES, describeDenial, forgetToken, takeToken, tokenPanel, withToken } from './access.js'
import { DEFAULT_LANGUAGE, fillLanguageSelect, languageById } from './languages.js'

const $ = (id) => document.getElementById(id)
const REFRESH_MS = 3000

const apiRooms = new URL('api/rooms', location.href)
const roomPage = (roomId) => new URL(`r/${encodeURIComponent(roomId)}`, location.href).href

// -- access ---------------------------------------------------------------------------------------

let token = takeToken() // none: today's requests
let denied = false // the room list was refused: stop asking until there is a new token

const tokenForm = tokenPanel($('access'), (newToken) => {
  token = newToken
  denied = false
  $('create-error').textContent = ''
  refresh()
})

/** The server answered 401 or 403: say why, and ask for a token. */
async function denyAccess (response) {
  const answer = await response.json().catch(() => null)
  if (token !== null && response.status === 401) forgetToken(token)
  const text = describeDenial(response.status, token !== null, answer?.detail, 'this server')
  tokenForm.show(text)
  return text
}

// -- create ---------------------------------------------------------------------------------------

fillLanguageSelect($('room-language'), 'python')

$('create-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const button = $('create-button')
  const error = $('create-error')
  const name = $('room-name').value.trim()
  const body = { language: $('room-language').value || DEFAULT_LANGUAGE }
  if (name) body.name = name
  button.disabled = true
  error.textContent = ''
  try {
    const response = await fetch(apiRooms, {
      method: 'POST',
      headers: withToken(token, { 'content-type': 'application/json' }),
      body: JSON.stringify(body)
    })
    if (DENIED_STATUSES.has(response.status)) throw new Error(await denyAccess(response))
    const answer = await response.json()
    if (!response.ok) throw new Error(describeError(answer))
    location.assign(roomPage(answer.id))
  } catch (failure) {
    error.textContent = `Could not create the room: ${failure.message}`
    button.disabled = false
  }
})

// A link to a room's page gives what follows its /r/; anything else is a room name (it may hold '/').
function roomFromLink (value) {
  if (!/^https?:\/\//i.test(value)) return value
  let path
  try {
    path = new URL(value).pathname
  } catch {
    return null
  }
  const at = path.indexOf('/r/')
  if (at < 0) return null
  try {
    return decodeURIComponent(path.slice(at + 3))
  } catch {
    return null
  }
}

function describeError (answer) {
  if (Array.isArray(answer.detail)) return answer.detail.map((item) => item.msg).join('; ')
  return String(answer.detail ?? answer.error ?? 'unknown error')
}

// -- join by link ---------------------------------------------------------------------------------

$('join-form').addEventListener('submit', (event) => {
  event.preventDefault()
  // A shared link may carry a token in its fragment (#token=...): the room page takes it from there.
  const [value, fragment = ''] = $('join-link').value.trim().split('#', 2)
  const roomId = roomFromLink(value)
  if (!roomId || roomId.length > 256) {
    $('join-error').textContent = 'Paste a room link, or a room name of up to 256 characters.'
    return
  }
  // The room page says what is wrong with a name the server refuses.
  location.assign(roomPage(roomId) + (fragment ? `#${fragment}` : ''))
})

// -- the room list --------------------------------------------------------------------------------

const rows = new Map() // room id -> <li>, updated in place so that keyboard focus survives

function describePeers (peers) {
  if (peers === 0) return 'No one here'
  return peers === 1 ? '1 person here' : `${peers} people here`
}

function newRow (room) {
  const item = document.createElement('li')
  item.className = 'room'
  item.dataset.roomId = room.id
  item.innerHTML =
    '<a class="room-link"><span class="room-title"></span><span class="room-meta">' +
    '<span class="room-language"></span><span class="room-peers"><span class="dot" aria-hidden="true"></span>' +
    '<span class="room-peers-label"></span></span></span></a>'
  item.querySelector('a').href = roomPage(room.id)
  return item
}

function fillRow (item, room) {
  item.querySelector('.room-title').textContent = room.name
  item.querySelector('.room-language').textContent = languageById(room.language).label
  item.querySelector('.room-peers-label').textContent = describePeers(room.peers)
  item.dataset.peers = String(room.peers)
  item.classList.toggle('live', room.peers > 0)
}

// The newest rooms only: the list is paged, and a lobby polled by many tabs stays cheap.
const LISTED_ROOMS = 100
apiRooms.searchParams.set('limit', String(LISTED_ROOMS))

function showRooms (rooms, more = false) {
  const list = $('room-list')
  const seen = new Set()
  // Newest first; existing rows never move, new ones go on top.
  const sorted = [...rooms].sort((a, b) => b.created_at.localeCompare(a.created_at))
  for (const room of sorted.reverse()) {
    seen.add(room.id)
    let item = rows.get(room.id)
    if (item === undefined) {
      item = newRow(room)
      rows.set(room.id, item)
      list.prepend(item)
    }
    fillRow(item, room)
  }
  for (const [roomId, item] of rows) {
    if (!seen.has(roomId)) {
      item.remove()
      rows.delete(roomId)
    }
  }
  $('rooms-empty').hidden = rows.size > 0
  const live = rooms.reduce((sum, room) => sum + room.peers, 0)
  const counted = more ? `The ${rooms.length} newest rooms` : `${rooms.length} ${rooms.length === 1 ? 'room' : 'rooms'}`
  $('rooms-summary').textContent =
    `${counted} · ${live} ${live === 1 ? 'person' : 'people'} editing`
}

let refreshing = false

async function refresh () {
  if (refreshing || denied || document.hidden) return
  refreshing = true
  try {
    const response = await fetch(apiRooms, { cache: 'no-store', headers: withToken(token) })
    if (DENIED_STATUSES.has(response.status)) {
      denied = true
      showRooms([])
      $('rooms-summary').textContent = ''
      $('rooms-empty').hidden = true
      await denyAccess(response)
      $('rooms-error').textContent = 'No rooms shown: paste a token under “Access token” to see them.'
      return
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`)
    const page = await response.json()
    showRooms(page.rooms, page.next_cursor !== null)
    $('rooms-error').textContent = ''
  } catch (failure) {
    $('rooms-error').textContent = `Could not load the rooms (${failure.message}); retrying.`
  } finally {
    refreshing = false
  }
}

refresh()
setInterval(refresh, REFRESH_MS)
document.addEventListener('visibilitychange', refresh)
