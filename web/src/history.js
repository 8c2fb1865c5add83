// The history panel: the room's versions (newest first, a page at a time), one of them shown
// read-only beside the editor (preview.js: its changes since, or its text, and "Restore…"), and
// for editors "Save version". The "Colour by author" switch (blame.js) lives here too.
//
// The list follows the room while the panel is open: it is asked for again every few seconds
// and once an edit pauses (a restore arrives as an edit), one request at a time, the first page
// only. Nothing is asked for while the panel is closed or the page hidden. With "Colour by
// author" on, a version's text is coloured too (its own blame).
//
// Keyboard: the History button opens the panel and focuses the newest version; the arrows, Home
// and End move along the list, Enter or Space shows a version; Escape cancels what is open (the
// label field, a restore's confirmation), else closes the panel and goes back to the button.

import { authorColors, authorship, SERVER_AUTHOR } from './blame.js'
import { versionPreview } from './preview.js'
import { showToast } from './toast.js'

const PAGE = 50
const POLL_MS = 5_000
const AFTER_EDIT_MS = 1_500

const relativeTime = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' })
const localTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })
const fullTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' })

/** "just now", "5 minutes ago", "3 hours ago", then the local date and time. */
function when (date, now = Date.now()) {
  const seconds = (date.getTime() - now) / 1000
  if (Math.abs(seconds) < 45) return 'just now'
  if (Math.abs(seconds) < 3600) return relativeTime.format(Math.round(seconds / 60), 'minute')
  if (Math.abs(seconds) < 86_400) return relativeTime.format(Math.round(seconds / 3600), 'hour')
  return localTime.format(date)
}

const labelOf = (version) => version.label ?? (version.automatic ? 'Automatic checkpoint' : 'Unnamed version')

function element (tag, className, text) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

function versionItem (version, selected, colorOf) {
  const button = element('button', 'version')
  button.type = 'button'
  button.dataset.id = version.id
  if (selected) button.setAttribute('aria-current', 'true')
  if (version.automatic) button.classList.add('automatic')
  const head = element('span', 'version-head')
  const time = element('time', 'version-time', when(new Date(version.created_at)))
  time.dateTime = version.created_at
  time.title = fullTime.format(new Date(version.created_at))
  head.append(element('span', 'version-label', labelOf(version)), time)
  const people = element('span', 'version-people')
  if (version.authors.length === 0) {
    people.textContent = 'no edits'
  } else {
    people.append(element('span', 'visually-hidden', 'by '))
    version.authors.forEach((name, index) => {
      const person = element('span', name === SERVER_AUTHOR ? 'author server' : 'author')
      const dot = element('span', 'dot')
      dot.style.backgroundColor = colorOf(name).edge
      dot.setAttribute('aria-hidden', 'true')
      person.append(dot, name + (index < version.authors.length - 1 ? ', ' : ''))
      people.append(person)
    })
  }
  button.append(head, people, element('span', 'version-id', `#${version.id}`))
  const item = element('li')
  item.append(button)
  return item
}

/**
 * The panel in `panel`, opened and closed by `button`. `request` calls the room's REST API
 * (rest.js); `textName` is the shared text shown and restored; `ytext` tells when the room
 * changed; `view` and `awareness` are the editor's (for the author colours).
 */
export function historyPanel ({ panel, button, request, textName, ytext, view, awareness }) {
  const $ = (id) => document.getElementById(id)
  const title = $('history-title')
  const list = $('history-list')
  const status = $('history-status')
  const more = $('history-more')
  const saveButton = $('history-save')
  const saveForm = $('history-save-form')
  const labelInput = $('history-label')
  const blameToggle = $('history-blame')

  let open = false
  let editable = true
  let versions = [] // newest first, as far as loaded
  let nextCursor = null
  let shownKey = ''
  let pending = null // the list request under way
  let again = false // and another was asked for meanwhile
  let listFailed = false // the last list request failed: say so once, not on every poll
  let pollTimer = 0
  let editTimer = 0

  function failed (what, error) {
    console.warn('history: %s failed', what, error)
    showToast(`${what} failed: ${error.message}`)
  }

  const blame = authorship({
    view,
    ytext,
    awareness,
    request,
    textName,
    legend: $('history-legend'),
    onError (error) {
      blameToggle.checked = false
      const missing = error.status === 404 && error.code === 'not_found'
      showToast(missing ? 'This server does not tell who wrote what' : `Could not colour by author: ${error.message}`)
    }
  })

  const preview = versionPreview({
    section: $('history-preview'),
    request,
    textName,
    awareness,
    coloured: () => blame.on,
    onRestored: () => refresh(),
    onClosed (id) {
      panel.classList.remove('previewing')
      const item = list.querySelector(`[data-id="${id}"]`)
      item?.removeAttribute('aria-current')
      ;(item ?? title).focus()
    }
  })

  // -- the list ---------------------------------------------------------------------------------

  function say (text) {
    if (status.textContent !== text) status.textContent = text
  }

  function render () {
    more.hidden = nextCursor === null
    say(versions.length ? '' : editable ? 'No versions yet: save one to come back to it later.' : 'No versions yet.')
    const key = versions.map((v) => `${v.id}|${v.label}|${v.authors.join(',')}`).join('\n')
    if (key === shownKey) { // only the times move on
      for (const time of list.querySelectorAll('time')) time.textContent = when(new Date(time.dateTime))
      return
    }
    shownKey = key
    const focusedId = list.contains(document.activeElement) ? document.activeElement.dataset.id : null
    const colorOf = authorColors(awareness)
    list.replaceChildren(...versions.map((version) => versionItem(version, version.id === preview.shown, colorOf)))
    if (focusedId) (list.querySelector(`[data-id="${focusedId}"]`) ?? list.querySelector('.version'))?.focus()
  }

  /** The first page again, keeping the older pages loaded; one request at a time. */
  async function refresh () {
    if (pending) {
      again = true
      return pending
    }
    pending = request(`versions?limit=${PAGE}`).then((page) => {
      const oldest = page.versions.at(-1)?.id
      const older = page.next_cursor === null ? [] : versions.filter((version) => version.id < oldest)
      versions = [...page.versions, ...older]
      if (older.length === 0) nextCursor = page.next_cursor
      listFailed = false
      if (open) render()
    }, (error) => {
      say('Could not load the versions.')
      if (!listFailed) failed('Loading the versions', error)
      listFailed = true
    }).finally(() => { pending = null })
    await pending
    if (again && open) {
      again = false
      return refresh()
    }
  }

  async function loadMore () {
    more.disabled = true
    try {
      const page = await request(`versions?limit=${PAGE}&cursor=${nextCursor}`)
      const last = versions.at(-1)?.id ?? Infinity
      const added = page.versions.filter((version) => version.id < last)
      versions.push(...added)
      nextCursor = added.length ? page.next_cursor : null
      render()
      const next = added.length ? list.querySelector(`[data-id="${added[0].id}"]`) : [...list.querySelectorAll('.version')].pop()
      next?.focus()
    } catch (error) {
      failed('Loading more versions', error)
    } finally {
      more.disabled = false
    }
  }

  function select (id) {
    for (const item of list.querySelectorAll('.version')) {
      if (Number(item.dataset.id) === id) item.setAttribute('aria-current', 'true')
      else item.removeAttribute('aria-current')
    }
    const version = versions.find((v) => v.id === id)
    panel.classList.add('previewing')
    return preview.show(id, version ? labelOf(version) : '')
  }

  list.addEventListener('click', (event) => {
    const item = event.target.closest('.version')
    if (item) select(Number(item.dataset.id))
  })

  list.addEventListener('keydown', (event) => {
    const items = [...list.querySelectorAll('.version')]
    const at = items.indexOf(document.activeElement)
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 }[event.key]
    if (to === undefined || at < 0) return
    event.preventDefault()
    items[Math.max(0, Math.min(items.length - 1, to))].focus()
  })

  more.addEventListener('click', loadMore)

  // -- save -------------------------------------------------------------------------------------

  function showSaveForm (shown) {
    saveForm.hidden = !shown
    saveButton.setAttribute('aria-expanded', String(shown))
    if (shown) labelInput.focus()
  }

  function cancelSave () {
    showSaveForm(false)
    saveButton.focus()
  }

  saveButton.addEventListener('click', () => showSaveForm(saveForm.hidden))
  $('history-save-cancel').addEventListener('click', cancelSave)
  labelInput.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return
    event.preventDefault() // and the panel stays open
    cancelSave()
  })

  saveForm.addEventListener('submit', async (event) => {
    event.preventDefault()
    const label = labelInput.value.trim()
    const submit = saveForm.querySelector('[type="submit"]')
    submit.disabled = true
    try {
      const saved = await request('versions', { method: 'POST', json: label ? { label } : {} })
      showToast(`Saved version #${saved.id}${label ? `: ${label}` : ''}`)
      labelInput.value = ''
      cancelSave()
      await refresh()
    } catch (error) {
      failed('Saving a version', error)
    } finally {
      submit.disabled = false
    }
  })

  // -- open, close, follow the room -------------------------------------------------------------

  function show () {
    open = true
    panel.hidden = false
    button.setAttribute('aria-expanded', 'true')
    title.focus()
    if (versions.length === 0) say('Loading versions…')
    else render()
    refresh().then(() => { // into the list, unless the focus went elsewhere meanwhile
      if (document.activeElement === title) (list.querySelector('[aria-current]') ?? list.querySelector('.version'))?.focus()
    })
    if (blameToggle.checked) blame.set(true)
    preview.reload()
    pollTimer = setInterval(() => { if (!document.hidden) refresh() }, POLL_MS)
  }

  function hide () {
    open = false
    panel.hidden = true
    button.setAttribute('aria-expanded', 'false')
    clearInterval(pollTimer)
    clearTimeout(editTimer)
    if (blame.on) blame.set(false)
    button.focus()
  }

  button.addEventListener('click', () => (open ? hide() : show()))
  $('history-close').addEventListener('click', hide)
  panel.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !event.defaultPrevented) {
      event.preventDefault()
      hide()
    }
  })

  blameToggle.addEventListener('change', () => {
    blame.set(blameToggle.checked)
    if (preview.mode === 'text') preview.reload()
  })

  ytext.observe(() => {
    if (!open) return
    clearTimeout(editTimer)
    editTimer = setTimeout(() => {
      refresh()
      preview.reload({ diffOnly: true })
    }, AFTER_EDIT_MS)
  })

  return {
    /** Save and Restore only for editors: a viewer's page (and a refused one) hides them. */
    setEditable (canEdit) {
      editable = canEdit
      saveButton.hidden = !canEdit
      if (!canEdit) showSaveForm(false)
      preview.setEditable(canEdit)
    },
    get open () { return open }
  }
}
