// Who is in the room (from the awareness states), and who you are in it (the name field).

import { MAX_NAME_LENGTH, cleanName, initials, saveName } from './identity.js'

function userOf (awareness, clientId, state) {
  const user = state?.user ?? {}
  return {
    clientId,
    name: cleanName(String(user.name ?? '')) || 'Anonymous',
    color: typeof user.color === 'string' ? user.color : '#64748b',
    self: clientId === awareness.clientID
  }
}

function personItem (person) {
  const label = person.self ? `${person.name} (you)` : person.name
  const item = document.createElement('li')
  item.className = 'person'
  item.dataset.clientId = person.clientId
  item.title = label
  const avatar = document.createElement('span')
  avatar.className = 'avatar'
  avatar.style.backgroundColor = person.color
  avatar.textContent = initials(person.name)
  avatar.setAttribute('aria-hidden', 'true')
  const name = document.createElement('span')
  name.className = 'person-name'
  name.textContent = label
  item.append(avatar, name)
  return item
}

/** Keep `list` showing everyone present (you first) and `count` saying how many. */
export function trackPeople (awareness, list, count) {
  let shown = ''
  function show () {
    const people = [...awareness.getStates()]
      .map(([clientId, state]) => userOf(awareness, clientId, state))
      .sort((a, b) => (b.self - a.self) || a.name.localeCompare(b.name))
    const key = people.map((person) => `${person.clientId}|${person.name}|${person.color}`).join('\n')
    if (key === shown) return // most changes are cursor moves
    shown = key
    list.replaceChildren(...people.map(personItem))
    count.textContent = people.length === 1 ? 'Only you' : `${people.length} here`
  }
  awareness.on('change', show)
  show()
}

/** Call `onRename` when someone else changes their name or colour. */
export function followRenames (awareness, onRename) {
  const known = new Map() // client id -> "name|color"
  awareness.on('change', ({ added, updated, removed }) => {
    let renamed = false
    for (const clientId of [...added, ...updated, ...removed]) {
      if (clientId === awareness.clientID) continue
      const state = awareness.getStates().get(clientId)
      if (state === undefined) {
        known.delete(clientId)
        continue
      }
      const user = userOf(awareness, clientId, state)
      const key = `${user.name}|${user.color}`
      if (known.has(clientId) && known.get(clientId) !== key) renamed = true
      known.set(clientId, key)
    }
    if (renamed) onRename()
  })
}

/**
 * The name field: edits show to the others as you type; Enter keeps the name (remembered in
 * localStorage) and Escape restores it, both back to the editor (`done`). Never blank.
 */
export function bindNameField (input, identity, awareness, done) {
  const announce = (name) => awareness.setLocalStateField('user', { ...identity, name })
  function commit () {
    const name = cleanName(input.value)
    if (name && name !== identity.name) {
      identity.name = name
      saveName(name)
    }
    input.value = identity.name
    announce(identity.name)
  }
  input.value = identity.name
  input.maxLength = MAX_NAME_LENGTH
  input.addEventListener('input', () => {
    const name = cleanName(input.value)
    if (name) announce(name)
  })
  input.addEventListener('change', commit)
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' || event.key === 'Escape') {
      event.preventDefault()
      if (event.key === 'Escape') input.value = identity.name
      commit()
      done()
    }
  })
}
