// Who this browser is in a room: a name and a colour, remembered in localStorage. A name is
// generated on the first visit so that nobody has to fill in a form before editing.

const NAME_KEY = 'collab.name'
const COLOR_KEY = 'collab.color'
export const MAX_NAME_LENGTH = 40

const ADJECTIVES = [
  'Amber', 'Brisk', 'Calm', 'Clever', 'Eager', 'Gentle', 'Happy', 'Jolly', 'Keen', 'Lucky',
  'Mellow', 'Nimble', 'Quiet', 'Rapid', 'Sunny', 'Swift', 'Witty', 'Zesty'
]
const ANIMALS = [
  'Badger', 'Crane', 'Dolphin', 'Falcon', 'Fox', 'Heron', 'Koala', 'Lynx', 'Marten', 'Otter',
  'Panda', 'Puffin', 'Raven', 'Seal', 'Tiger', 'Wombat', 'Yak', 'Zebra'
]

// Dark enough for white label text (contrast of at least 4.5:1 on each).
export const COLORS = [
  '#b91c1c', '#c2410c', '#a16207', '#4d7c0f', '#047857', '#0e7490',
  '#1d4ed8', '#4338ca', '#7e22ce', '#be185d'
]

function pick (list) {
  return list[Math.floor(Math.random() * list.length)]
}

function read (key) {
  try {
    return localStorage.getItem(key)
  } catch {
    return null // storage disabled: the identity lasts as long as the page
  }
}

function write (key, value) {
  try {
    localStorage.setItem(key, value)
  } catch {
    // storage disabled or full: nothing to remember it in
  }
}

/** A display name: trimmed, single-spaced, at most MAX_NAME_LENGTH characters; '' if blank. */
export function cleanName (name) {
  return name.replace(/\s+/g, ' ').trim().slice(0, MAX_NAME_LENGTH)
}

export function loadIdentity () {
  let name = cleanName(read(NAME_KEY) ?? '')
  if (!name) {
    name = `${pick(ADJECTIVES)} ${pick(ANIMALS)}`
    write(NAME_KEY, name)
  }
  let color = read(COLOR_KEY)
  if (!COLORS.includes(color)) {
    color = pick(COLORS)
    write(COLOR_KEY, color)
  }
  return { name, color, colorLight: `${color}33` }
}

export function saveName (name) {
  write(NAME_KEY, name)
}

/** Up to two initials for an avatar: the first letter or digit of the first and last words. */
export function initials (name) {
  const firsts = name.split(' ').map((word) => word.match(/[\p{L}\p{N}]/u)?.[0]).filter(Boolean)
  if (firsts.length === 0) return '?'
  return (firsts.length > 1 ? firsts[0] + firsts[firsts.length - 1] : firsts[0]).toUpperCase()
}
