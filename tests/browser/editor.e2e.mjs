// Two people edit one room in real Chromium, through the lobby and the editor page.
//
//   node tests/browser/editor.e2e.mjs http://127.0.0.1:PORT artifacts/web
//
// Alice works with the keyboard alone at 1280x800, Bob with the mouse at 400 px wide, each in a
// browser context of their own (one context would sync its tabs through BroadcastChannel,
// without the server). Progress goes to stdout as JSON lines; the last one is
// {"result": {...}} for tests/test_web_browser.py to check against the server. Screenshots are
// written to the artifacts folder on every run, failed or not. Exits 1 on the first failure.

import { mkdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { chromium } from 'playwright-core'
import { CHROMIUM, FLAGS, WAIT, check, elapsed, log, runAndFinish, until } from './harness.mjs'

const [baseUrl, artifacts] = process.argv.slice(2)
if (!baseUrl || !artifacts) {
  console.error('usage: node editor.e2e.mjs BASE_URL ARTIFACTS_DIR')
  process.exit(2)
}
const origin = new URL(baseUrl).origin
// Far below the ~15 s a peer takes to show again when the page does not re-announce itself.
const CARET_AFTER_RECONNECT = 5_000

const editorText = (page) => page.evaluate(() => window.collab.view.state.doc.toString())
const connection = (page) => page.locator('#connection').getAttribute('data-state')
const activeId = (page) => page.evaluate(() => document.activeElement?.id || document.activeElement?.className)

/** `page.waitForFunction`, failing with what was awaited rather than only how long. */
async function waitFor (what, page, fn, arg, timeout = WAIT) {
  try {
    return await page.waitForFunction(fn, arg, { timeout })
  } catch (error) {
    throw new Error(`timed out after ${timeout} ms waiting for ${what}`, { cause: error })
  }
}

async function waitConnection (page, state, timeout = WAIT) {
  await waitFor(`${page.who}'s page to be ${state}`, page,
    (wanted) => document.getElementById('connection').dataset.state === wanted, state, timeout)
}

/** Wait until `page` shows a remote caret labelled `name`; return its colour. */
async function waitCaret (page, name, timeout = WAIT) {
  const handle = await waitFor(`${page.who} to see a caret labelled ${name}`, page, (wanted) => {
    const label = [...document.querySelectorAll('.cm-ySelectionInfo')].find((info) => info.textContent === wanted)
    return label && getComputedStyle(label.closest('.cm-ySelectionCaret')).backgroundColor
  }, name, timeout)
  return handle.jsonValue()
}

function rgb (hex) {
  const [r, g, b] = [1, 3, 5].map((index) => parseInt(hex.slice(index, index + 2), 16))
  return `rgb(${r}, ${g}, ${b})`
}

async function waitConverged (pages, fragments, what) {
  return until(what, async () => {
    const texts = await Promise.all(pages.map(editorText))
    const same = texts.every((text) => text === texts[0])
    return same && fragments.every((fragment) => texts[0].includes(fragment)) && texts[0]
  })
}

/** The completion popup's labels and which one is selected, or null when it is closed. */
const completionPopup = (page) => page.evaluate(() => {
  const items = [...document.querySelectorAll('.cm-tooltip-autocomplete li')]
  if (items.length === 0) return null
  return {
    labels: items.map((item) => item.querySelector('.cm-completionLabel').textContent),
    kinds: items.map((item) => [...item.querySelector('.cm-completionIcon').classList].pop().replace('cm-completionIcon-', '')),
    selected: items.findIndex((item) => item.hasAttribute('aria-selected'))
  }
})

/**
 * Wait until `page` shows a completion popup offering `label`, then until it takes keys (the
 * editor ignores keys for its interactionDelay after the popup opens, so that a quick Enter
 * stays a newline). Returns what the popup shows.
 */
async function waitCompletion (page, label) {
  const handle = await waitFor(`${page.who}'s completion popup to offer ${label}`, page, (wanted) => {
    const labels = [...document.querySelectorAll('.cm-tooltip-autocomplete .cm-completionLabel')]
    return labels.some((item) => item.textContent === wanted) && Date.now()
  }, label)
  const seenAt = await handle.jsonValue()
  await waitFor(`${page.who}'s popup to take keys`, page,
    (since) => Date.now() - since >= window.collab.completion.interactionDelay, seenAt)
  return completionPopup(page)
}

async function serverText (roomId) {
  const response = await fetch(`${origin}/api/rooms/${roomId}/text?name=codemirror`)
  check(response.ok, `GET text answered ${response.status}`)
  return response.text()
}

const SEED = `def fizzbuzz(n: int) -> str:
    """Say it the way the kids do."""
    if n % 15 == 0:
        return "FizzBuzz"
    if n % 3 == 0:
        return "Fizz"
    if n % 5 == 0:
        return "Buzz"
    return str(n)


for n in range(1, 16):
    print(fizzbuzz(n))
`

await mkdir(artifacts, { recursive: true })
const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS })
const pages = new Map() // screenshot name -> page
const problems = []
const completionRequests = new Map() // person -> how many completion requests their page made

async function newPerson (name, viewport) {
  const context = await browser.newContext({ viewport, acceptDownloads: true })
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin })
  completionRequests.set(name, 0)
  context.on('request', (request) => {
    const url = new URL(request.url())
    if (url.pathname.endsWith('/complete')) completionRequests.set(name, completionRequests.get(name) + 1)
    if (!['data:', 'blob:'].includes(url.protocol) && url.origin !== origin &&
        url.origin !== origin.replace(/^http/, 'ws')) {
      problems.push(`${name} requested ${request.url()}: the page must only talk to its server`)
    }
  })
  const page = await context.newPage()
  page.who = name
  page.on('pageerror', (error) => problems.push(`${name}: uncaught ${error.stack ?? error}`))
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().includes('ERR_INTERNET_DISCONNECTED')) {
      log('console error', { who: name, text: message.text() })
    }
  })
  return { context, page }
}

await runAndFinish({ browser, pages, problems, artifacts }, async () => {
  const alice = await newPerson('Alice', { width: 1280, height: 800 })
  const bob = await newPerson('Bob', { width: 400, height: 760 })
  const a = alice.page
  const b = bob.page

  // -- Alice creates a room from the lobby, with the keyboard only ----------------------------
  await a.goto(`${origin}/`)
  pages.set('alice-lobby-1280', a)
  await until('the lobby to focus the room name', async () => (await activeId(a)) === 'room-name')
  await a.keyboard.type('Pairing session')
  await a.keyboard.press('Tab')
  check(await activeId(a) === 'room-language', 'Tab from the room name should reach the language')
  await a.keyboard.press('j') // JavaScript: Bob switches the room to Python later
  check(await a.inputValue('#room-language') === 'javascript', 'typing "j" should pick JavaScript')
  await a.keyboard.press('Tab')
  check(await activeId(a) === 'create-button', 'Tab should then reach "Create room"')
  await a.keyboard.press('Enter')
  await a.waitForURL(/\/r\/[A-Za-z0-9._-]+$/, { timeout: WAIT })
  const roomId = new URL(a.url()).pathname.split('/').pop()
  pages.delete('alice-lobby-1280')
  pages.set('alice-1280', a)
  await waitConnection(a, 'connected')
  log('room created', { roomId })
  // A lobby left open in another tab: its peer counts must follow without a reload.
  const lobby = await alice.context.newPage()
  pages.set('lobby-1280', lobby)
  await lobby.goto(`${origin}/`)
  const lobbyRow = (peers) => lobby.locator(`li.room[data-room-id="${roomId}"][data-peers="${peers}"]`)
  await lobbyRow(1).waitFor({ timeout: WAIT })

  // Tab order from the top: skip link, "all rooms", then the name field.
  await until('Tab to reach the name field', async () => {
    await a.keyboard.press('Tab')
    return (await activeId(a)) === 'user-name'
  }, 3_000)
  await a.keyboard.press('Control+A')
  await a.keyboard.type('Alice')
  await a.keyboard.press('Enter')
  check((await a.evaluate(() => document.activeElement.classList.contains('cm-content'))),
    'Enter in the name field should move focus to the editor')
  check(await a.evaluate(() => localStorage.getItem('collab.name')) === 'Alice', 'the name should be remembered')

  // The server's copy and the page are one: a REST write shows up in the editor.
  const put = await fetch(`${origin}/api/rooms/${roomId}/text?name=codemirror`, { method: 'PUT', body: SEED })
  check(put.ok, `PUT text answered ${put.status}`)
  await until('the REST write to reach the editor', async () => (await editorText(a)) === SEED)

  // -- Bob finds it in the lobby, live peer count included, and joins by mouse ----------------
  await b.goto(`${origin}/`)
  pages.set('bob-lobby-400', b)
  const row = b.locator(`li.room[data-room-id="${roomId}"][data-peers="1"]`)
  await row.waitFor({ timeout: WAIT })
  check((await row.locator('.room-title').textContent()) === 'Pairing session', 'the lobby should list the room by name')
  check(await b.evaluate(() => document.documentElement.scrollWidth <= innerWidth), 'the lobby should fit 400 px')
  await b.screenshot({ path: path.join(artifacts, 'bob-lobby-400.png') })
  await row.locator('a').click()
  await b.waitForURL(`**/r/${roomId}`, { timeout: WAIT })
  pages.delete('bob-lobby-400')
  pages.set('bob-400', b)
  await waitConnection(b, 'connected')
  await until('Bob to get the seeded text', async () => (await editorText(b)) === SEED)
  await b.fill('#user-name', 'Bob')
  await b.press('#user-name', 'Enter')
  check(await b.locator('#room-name').textContent() === 'Pairing session', 'the header should name the room')
  log('both in the room')

  // -- a language switch reaches the other page -------------------------------------------------
  await b.selectOption('#language', 'python')
  await waitFor('Alice\'s page to switch to Python', a, () => document.getElementById('language').value === 'python' &&
    document.querySelector('.cm-editor').dataset.language === 'python')
  await waitFor('Bob\'s page to switch to Python', b, () => document.querySelector('.cm-editor').dataset.language === 'python')
  log('language switched')

  // -- both type at once ------------------------------------------------------------------------
  await a.keyboard.press('Control+End')
  await b.keyboard.press('Control+Home')
  await Promise.all([
    a.keyboard.type('answer = 6 * 7', { delay: 20 }),
    b.keyboard.type('# Bob was here', { delay: 20 }).then(() => b.keyboard.press('Enter'))
  ])
  let text = await waitConverged([a, b], ['answer = 6 * 7', '# Bob was here\n', 'def fizzbuzz'], 'both editors to converge')
  check(await serverText(roomId) === text, 'the server\'s copy should equal the editors\'')
  log('converged', { length: text.length })

  // Each sees the other's caret, labelled with their name, in their colour.
  const bobColor = await b.evaluate(() => window.collab.awareness.getLocalState().user.color)
  const aliceColor = await a.evaluate(() => window.collab.awareness.getLocalState().user.color)
  check(await waitCaret(a, 'Bob') === rgb(bobColor), 'Alice should see Bob\'s caret in his colour')
  check(await waitCaret(b, 'Alice') === rgb(aliceColor), 'Bob should see Alice\'s caret in her colour')
  await a.locator('#people .person', { hasText: 'Bob' }).waitFor({ timeout: WAIT })
  await b.locator('#people .person', { hasText: 'Alice' }).waitFor({ timeout: WAIT })
  log('carets labelled')

  // -- Bob's socket closes for real; both type; he comes back -------------------------------
  await bob.context.setOffline(true) // keeps the reconnect attempts failing until we say
  await b.evaluate(() => window.collab.provider.ws.close())
  await waitConnection(b, 'offline')
  await until('the server to tell Alice that Bob left', async () =>
    (await a.locator('#people .person').count()) === 1)
  // Edits less than 500 ms apart are one undo step; a person pauses, the test says so.
  await a.evaluate(() => window.collab.undoManager.stopCapturing())
  await Promise.all([
    a.keyboard.press('Enter').then(() => a.keyboard.type('done = True', { delay: 10 })),
    b.keyboard.type('# typed while offline', { delay: 10 }).then(() => b.keyboard.press('Enter'))
  ])
  check(!(await editorText(a)).includes('typed while offline'), 'Bob\'s offline edit must not reach Alice yet')
  check(!(await editorText(b)).includes('done = True'), 'Alice\'s edit must not reach offline Bob')
  await bob.context.setOffline(false)
  await waitConnection(b, 'connected')
  text = await waitConverged([a, b], ['done = True', '# typed while offline\n', 'answer = 6 * 7'], 'convergence after the reconnect')
  check(await serverText(roomId) === text, 'the server\'s copy should equal the editors\' after the reconnect')
  log('reconnected and converged')
  // Awareness after a reconnect: both carets show again at once, not ~15 s later.
  await waitCaret(a, 'Bob', CARET_AFTER_RECONNECT)
  await waitCaret(b, 'Alice', CARET_AFTER_RECONNECT)
  log('carets back after the reconnect')

  // -- a rename shows on the other side at once ----------------------------------------------
  await b.fill('#user-name', 'Bob (mobile)')
  await b.press('#user-name', 'Enter')
  await waitCaret(a, 'Bob (mobile)')

  // -- per-user undo: Alice's Ctrl+Z takes back her edit only --------------------------------
  await a.keyboard.press('Control+Z')
  text = await waitConverged([a, b], ['# typed while offline\n', '# Bob was here\n'], 'convergence after Alice\'s undo')
  check(!text.includes('done = True') && text.includes('answer = 6 * 7'), 'Alice\'s undo should take back her last edit only')

  // -- download, with the keyboard: Escape, then Shift+Tab leaves the editor ----------------
  await a.keyboard.press('Escape')
  await a.keyboard.press('Shift+Tab')
  check(await activeId(a) === 'download', 'Escape then Shift+Tab should reach "Download"')
  const [download] = await Promise.all([a.waitForEvent('download', { timeout: WAIT }), a.keyboard.press('Enter')])
  check(download.suggestedFilename() === `${roomId}.py`, `downloaded as ${download.suggestedFilename()}`)
  check(await readFile(await download.path(), 'utf8') === text, 'the download should be the room\'s text')

  check(await b.evaluate(() => document.documentElement.scrollWidth <= innerWidth), 'the room page should fit 400 px')
  await b.click('#share')
  await b.locator('#toast', { hasText: 'Link copied' }).waitFor({ timeout: WAIT })
  check(await b.evaluate(() => navigator.clipboard.readText()) === `${origin}/r/${roomId}`, 'Copy link should copy the room\'s link')
  // Back into the editor (Tab), cursor to the end, where it shows well in the screenshots.
  await a.keyboard.press('Tab')
  check(await a.evaluate(() => document.activeElement.classList.contains('cm-content')), 'Tab from "Download" should reach the editor')
  await a.keyboard.press('Control+End')
  await waitFor('Bob to see Alice\'s caret on the last line', b, () => {
    const label = [...document.querySelectorAll('.cm-ySelectionInfo')].find((info) => info.textContent === 'Alice')
    return label?.closest('.cm-line') === [...document.querySelectorAll('.cm-line')].pop()
  })

  // -- code completion from the server, on the typing page only --------------------------------
  // Alice (keyboard) types `os.pa` and takes `path` from the popup with the arrows and Enter.
  const asked = Object.fromEntries(completionRequests)
  await a.keyboard.press('Enter')
  await a.keyboard.type('import os', { delay: 20 })
  await a.keyboard.press('Escape') // closes the popup for `os` (shown or coming): Enter is a newline
  await a.keyboard.press('Enter')
  await a.keyboard.type('os.pa', { delay: 20 })
  const popup = await waitCompletion(a, 'path')
  await a.screenshot({ path: path.join(artifacts, 'completion-1280.png') })
  const target = popup.labels.indexOf('path')
  check(popup.kinds[target] === 'property', `path should show as a property, not ${popup.kinds[target]}`)
  for (let step = popup.selected; step !== target; step += Math.sign(target - step)) {
    await a.keyboard.press(target > step ? 'ArrowDown' : 'ArrowUp')
  }
  const chosen = await completionPopup(a)
  check(chosen.labels[chosen.selected] === 'path', `the arrows should select path, not ${chosen.labels[chosen.selected]}`)
  await a.keyboard.press('Enter')
  text = await waitConverged([a, b], ['\nimport os\nos.path'], 'both pages to show the accepted completion')
  check(text.endsWith('\nimport os\nos.path'), 'Enter should insert `path` and nothing else')
  check(await completionPopup(a) === null, 'the popup should close once a completion is taken')
  check(await serverText(roomId) === text, 'the server\'s copy should hold the completion')
  check(completionRequests.get('Alice') > asked.Alice, 'Alice\'s page should have asked the server')
  check(completionRequests.get('Bob') === asked.Bob, 'Bob\'s page must not ask for completions of Alice\'s typing')
  check(await completionPopup(b) === null, 'Bob\'s page must not show a popup for Alice\'s typing')
  log('completion taken with the keyboard', { requests: completionRequests.get('Alice') - asked.Alice })

  // Bob (mouse, 400 px) types inside a call and clicks `getcwd`.
  const aliceAsked = completionRequests.get('Alice')
  await b.locator('.cm-content').click()
  await b.keyboard.press('Control+End')
  await b.keyboard.press('Enter')
  await b.keyboard.type('print(os.getcw', { delay: 20 }) // the editor closes the bracket
  await waitCompletion(b, 'getcwd')
  check(await b.evaluate(() => {
    const box = document.querySelector('.cm-tooltip-autocomplete').getBoundingClientRect()
    return box.left >= 0 && box.right <= innerWidth && document.documentElement.scrollWidth <= innerWidth
  }), 'the popup should fit 400 px')
  await b.screenshot({ path: path.join(artifacts, 'completion-400.png') })
  await b.locator('.cm-tooltip-autocomplete li', { has: b.locator('.cm-completionLabel', { hasText: /^getcwd$/ }) }).click()
  text = await waitConverged([a, b], ['\nimport os\nos.path\nprint(os.getcwd)'], 'both pages to show Bob\'s completion')
  check(await serverText(roomId) === text, 'the server\'s copy should hold Bob\'s completion')
  check(completionRequests.get('Alice') === aliceAsked, 'Alice\'s page must not ask for completions of Bob\'s typing')
  log('completion taken with the mouse')

  await lobbyRow(2).waitFor({ timeout: WAIT })
  await lobby.screenshot({ path: path.join(artifacts, 'lobby-1280.png') })
  pages.delete('lobby-1280')
  await lobby.close()

  text = await editorText(a)

  // -- a room named after a file: Bob types its URL as it is, Alice joins by its name ---------
  const fileRoom = 'team/app:src/main.py'
  await b.goto(`${origin}/r/${fileRoom}`)
  check(new URL(b.url()).pathname === `/r/${encodeURIComponent(fileRoom)}`, `the page should move to one segment, not ${b.url()}`)
  await waitConnection(b, 'connected')
  await b.locator('.cm-content').click()
  await b.keyboard.type('x = 1', { delay: 20 })
  await a.goto(`${origin}/`)
  await a.locator('#join-link').fill(fileRoom)
  await a.keyboard.press('Enter')
  await waitConnection(a, 'connected')
  const fileText = await waitConverged([a, b], ['x = 1'], 'both pages to show the file room\'s text')
  check(await serverText(encodeURIComponent(fileRoom)) === fileText, 'the server\'s copy of the file room should equal the editors\'')
  log('a room named after a file', { url: b.url() })

  console.log(JSON.stringify({ result: { room: roomId, text, language: 'python', seconds: elapsed() } }))
})
