// The history panel in real Chromium: save a version, type on, restore it, and see it everywhere.
//
//   node tests/browser/history.e2e.mjs BASE_URL ARTIFACTS_DIR ROOM BIG_ROOM EDITOR_TOKEN VIEWER_TOKEN
//
// The server wants tokens: EDITOR_TOKEN is an editor's for every room, VIEWER_TOKEN a viewer's for
// ROOM; BIG_ROOM holds 500 versions already. Each person has a browser context of their own.
// Alice (1280x800) works the panel with the keyboard: she opens it, saves a named version, types
// on, selects the version, looks at its changes and its text, restores it, and colours the lines
// (and the version's text) by author. Bob (1024x768) keeps his panel open: the saved version and
// the two versions of the restore appear in it, and his editor shows the restored text. Vic, a
// viewer (400 px), sees the versions without Save or Restore. Last, Alice opens the panel on
// BIG_ROOM and loads a second page. Progress goes to stdout as JSON lines; the last one is
// {"result": {...}} for tests/test_web_history_browser.py to check against the server.
// Screenshots are written to the artifacts folder on every run, failed or not. Exits 1 on the
// first failure.

import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { chromium } from 'playwright-core'
import { CHROMIUM, FLAGS, WAIT, check, elapsed, log, runAndFinish, until } from './harness.mjs'

const [baseUrl, artifacts, roomId, bigRoomId, editorToken, viewerToken] = process.argv.slice(2)
if (!viewerToken) {
  console.error('usage: node history.e2e.mjs BASE_URL ARTIFACTS_DIR ROOM BIG_ROOM EDITOR_TOKEN VIEWER_TOKEN')
  process.exit(2)
}
const origin = new URL(baseUrl).origin
const PAGE = 50 // versions the panel asks for at a time

const editorText = (page) => page.evaluate(() => window.collab.view.state.doc.toString())
const active = (page) => page.evaluate(() => {
  const focused = document.activeElement
  return focused?.id || (focused?.classList.contains('version') && `version ${focused.dataset.id}`) ||
    (focused?.dataset.mode && `mode ${focused.dataset.mode}`) || focused?.className || ''
})
const versionLabels = (page) => page.locator('#history-list .version-label').allTextContents()

async function api (pathname, { token = editorToken, method = 'GET' } = {}) {
  const response = await fetch(`${origin}/api/rooms/${roomId}/${pathname}`, { method, headers: { authorization: `Bearer ${token}` } })
  return response
}

async function serverText () {
  const response = await api('text?name=codemirror')
  check(response.ok, `GET text answered ${response.status}`)
  return response.text()
}

async function waitConnection (page, state) {
  try {
    await page.waitForFunction((wanted) => document.getElementById('connection').dataset.state === wanted, state, { timeout: WAIT })
  } catch (error) {
    throw new Error(`timed out waiting for ${page.who}'s page to be ${state}`, { cause: error })
  }
}

/** Press `key` until the focus is on `wanted` (see `active`); fail after `most` presses. */
async function pressUntil (page, key, wanted, most = 12) {
  for (let pressed = 0; pressed < most; pressed++) {
    await page.keyboard.press(key)
    if ((await active(page)) === wanted) return
  }
  throw new Error(`${most} presses of ${key} did not reach ${wanted} on ${page.who}'s page (at ${await active(page)})`)
}

async function waitLabels (page, wanted, what) {
  return until(`${page.who}'s panel to list ${what}`, async () => {
    const labels = await versionLabels(page)
    return wanted.every((label) => labels.includes(label)) && labels
  })
}

async function waitConverged (pages, wanted, what) {
  return until(what, async () => {
    const texts = await Promise.all(pages.map(editorText))
    return texts.every((text) => text === wanted)
  })
}

await mkdir(artifacts, { recursive: true })
const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS })
const pages = new Map() // screenshot name -> page
const problems = []

async function newPerson (name, viewport, token) {
  const context = await browser.newContext({ viewport })
  context.on('request', (request) => {
    const url = new URL(request.url())
    if (url.pathname.startsWith('/api/') && request.headers().authorization !== `Bearer ${token}`) {
      problems.push(`${name}'s ${request.method()} ${url.pathname} went without the page's token`)
    }
    if (!['data:', 'blob:'].includes(url.protocol) && url.origin !== origin && url.origin !== origin.replace(/^http/, 'ws')) {
      problems.push(`${name} requested ${request.url()}: the page must only talk to its server`)
    }
  })
  const page = await context.newPage()
  page.who = name
  page.on('pageerror', (error) => problems.push(`${name}: uncaught ${error.stack ?? error}`))
  page.on('console', (message) => {
    if (message.type() === 'error') log('console error', { who: name, text: message.text() })
  })
  return page
}

async function join (page, name, token) {
  await page.goto(`${origin}/r/${roomId}#token=${token}`)
  await waitConnection(page, 'connected')
  await page.fill('#user-name', name)
  await page.press('#user-name', 'Enter') // and into the editor
}

await runAndFinish({ browser, pages, problems, artifacts }, async () => {
  const a = await newPerson('Alice', { width: 1280, height: 800 }, editorToken)
  const b = await newPerson('Bob', { width: 1024, height: 768 }, editorToken)
  const v = await newPerson('Vic', { width: 400, height: 760 }, viewerToken)
  pages.set('history-alice-1280', a)
  pages.set('history-bob-1024', b)

  // -- both write a little; Bob opens his panel and leaves it open ----------------------------
  await join(a, 'Alice', editorToken)
  await join(b, 'Bob', editorToken)
  await a.keyboard.type('alpha = 1\nbeta = 2\n', { delay: 10 })
  await waitConverged([a, b], 'alpha = 1\nbeta = 2\n', 'Bob to get Alice\'s lines')
  await b.keyboard.press('Control+End')
  await b.keyboard.type('gamma = 3\n', { delay: 10 })
  const saved = 'alpha = 1\nbeta = 2\ngamma = 3\n'
  await waitConverged([a, b], saved, 'both pages to hold both people\'s lines')
  await b.click('#history-button')
  await b.locator('#history-status', { hasText: 'No versions yet' }).waitFor({ timeout: WAIT })
  log('both wrote; Bob\'s panel is open')

  // -- Alice opens the panel with the keyboard and saves a named version -----------------------
  await a.keyboard.press('Escape')
  await pressUntil(a, 'Shift+Tab', 'history-button')
  await a.keyboard.press('Enter')
  check(await a.locator('#history').isVisible(), 'Enter on "History" should open the panel')
  check(await a.getAttribute('#history-button', 'aria-expanded') === 'true', 'the button should say the panel is open')
  check(await active(a) === 'history-title', `opening the panel should focus its title, not ${await active(a)}`)
  await a.locator('#history-status', { hasText: 'No versions yet' }).waitFor({ timeout: WAIT })
  await pressUntil(a, 'Tab', 'history-save')
  await a.keyboard.press('Enter')
  check(await active(a) === 'history-label', '"Save version" should open the label field')
  await a.keyboard.type('First draft')
  await a.keyboard.press('Enter')
  await a.locator('#toast', { hasText: 'Saved version' }).waitFor({ timeout: WAIT })
  await waitLabels(a, ['First draft'], 'the saved version')
  check(await active(a) === 'history-save', 'saving should put the focus back on "Save version"')
  check(await a.locator('#history-save-form').isHidden(), 'the label field should close once saved')
  const savedId = Number(await a.locator('#history-list .version').first().getAttribute('data-id'))
  const people = await a.locator(`.version[data-id="${savedId}"] .version-people`).textContent()
  check(people === 'by Alice, Bob', `the version should name both people, not ${JSON.stringify(people)}`)
  log('saved from the panel', { savedId })
  await waitLabels(b, ['First draft'], 'the version Alice saved (it polls while open)')

  // -- Alice types on, then selects the version from the list with the keyboard ---------------
  await a.locator('.cm-content').click()
  await a.keyboard.press('Control+End')
  await a.keyboard.type('delta = 4\n', { delay: 10 })
  await waitConverged([a, b], `${saved}delta = 4\n`, 'both pages to get the line typed after the save')
  await a.keyboard.press('Escape')
  await pressUntil(a, 'Tab', `version ${savedId}`)
  await a.keyboard.press('Enter')
  check(await a.getAttribute(`.version[data-id="${savedId}"]`, 'aria-current') === 'true', 'Enter should mark the version as shown')
  check(await active(a) === `version ${savedId}`, 'the focus should stay in the list')
  const added = a.locator('#history-preview-body .row.added .code')
  await added.first().waitFor({ timeout: WAIT })
  check(JSON.stringify(await added.allTextContents()) === '["delta = 4"]', 'the changes since should be the added line')
  check(await a.locator('#history-preview-body .row.removed').count() === 0, 'nothing was removed since the version')
  await a.screenshot({ path: path.join(artifacts, 'history-diff-1280.png') })
  log('version selected with the keyboard')

  // Its text, read-only: the preview holds the text as saved.
  await pressUntil(a, 'Tab', 'mode text')
  await a.keyboard.press('Enter')
  await until('the preview to show the version\'s text', async () =>
    (await a.locator('#history-preview-body').getAttribute('data-mode')) === 'text' &&
    (await a.locator('#history-preview-body .code').allTextContents()).join('\n') === saved)
  check(!(await a.locator('#history-preview-body').evaluate((body) => body.isContentEditable)), 'the preview must be read-only')

  // -- Alice restores it: "Restore…", then the confirmation, with the keyboard ----------------
  await pressUntil(a, 'Tab', 'history-restore')
  await a.keyboard.press('Enter')
  check(await a.locator('#history-confirm').isVisible(), 'Restore should ask first')
  check(await active(a) === 'history-confirm-restore', 'the confirmation should have the focus')
  await a.screenshot({ path: path.join(artifacts, 'history-confirm-1280.png') })
  await a.keyboard.press('Enter')
  await waitConverged([a, b], saved, 'both editors to show the restored text')
  check(await serverText() === saved, 'the server\'s text should be the restored version\'s')
  await a.locator('#toast', { hasText: `Restored version #${savedId}` }).waitFor({ timeout: WAIT })
  const restoreLabels = [`before restoring version ${savedId}`, `restored version ${savedId}`]
  const bobLabels = await waitLabels(b, restoreLabels, 'the restore\'s two versions')
  check(bobLabels[0] === restoreLabels[1] && bobLabels[1] === restoreLabels[0] && bobLabels[2] === 'First draft',
    `Bob's panel should list the restore newest first: ${JSON.stringify(bobLabels)}`)
  await waitLabels(a, restoreLabels, 'the restore\'s two versions')
  log('restored', { labels: bobLabels })

  // The version is now the text: no changes since.
  await a.click('#history-preview [data-mode="diff"]')
  await a.locator('#history-preview-note', { hasText: `No changes since version #${savedId}` }).waitFor({ timeout: WAIT })

  // -- colour by author ---------------------------------------------------------------------------
  await pressUntil(a, 'Shift+Tab', 'history-blame', 20)
  await a.keyboard.press('Space')
  const legend = a.locator('#history-legend')
  await legend.locator('li[data-author="Alice"]').waitFor({ timeout: WAIT })
  await legend.locator('li[data-author="Bob"]').waitFor({ timeout: WAIT })
  await a.locator('.cm-line[title="Alice"]').first().waitFor({ timeout: WAIT })
  const presenceColor = (page) => page.evaluate(() => window.collab.awareness.getLocalState().user.color)
  const swatchOf = (who) => legend.locator(`li[data-author="${who}"] .swatch`).evaluate((node) => getComputedStyle(node).backgroundColor)
  const [aliceColor, bobColor] = [await presenceColor(a), await presenceColor(b)]
  const [aliceSwatch, bobSwatch] = [await swatchOf('Alice'), await swatchOf('Bob')]
  const rgb = (hex) => `rgb(${[1, 3, 5].map((index) => parseInt(hex.slice(index, index + 2), 16)).join(', ')})`
  check(aliceSwatch !== bobSwatch, `Alice and Bob should not share a colour in the legend (${aliceSwatch})`)
  // Each keeps their presence colour, unless both picked the same one (then the second differs).
  check(aliceColor === bobColor || bobSwatch === rgb(bobColor),
    `Bob's colour in the legend should be his presence colour, not ${bobSwatch}`)
  // A line Bob types now is his once the typing pauses.
  await b.locator('.cm-content').click()
  await b.keyboard.press('Control+End')
  await b.keyboard.type('epsilon = 5', { delay: 10 })
  await until('Alice to see Bob\'s new line coloured as his', () =>
    a.evaluate(() => [...document.querySelectorAll('.cm-line')].pop()?.title === 'Bob'))
  // The version's text is coloured by its own authors.
  await a.click('#history-preview [data-mode="text"]')
  await a.locator('#history-preview-body .row[title="Alice"]').first().waitFor({ timeout: WAIT })
  await a.locator('#history-preview-body .row[title="Bob"]').first().waitFor({ timeout: WAIT })
  await a.screenshot({ path: path.join(artifacts, 'history-blame-1280.png') })
  log('coloured by author', { authors: await legend.locator('.legend-name').allTextContents() })
  await b.keyboard.press('Control+Z') // the room is the restored version again
  await waitConverged([a, b], saved, 'Bob\'s undo to take his line back')

  // Escape closes the panel (the focus is on "Its text") and goes back to its button.
  check(await active(a) === 'mode text', `the focus should still be in the panel, not on ${await active(a)}`)
  await a.keyboard.press('Escape')
  check(await a.locator('#history').isHidden(), 'Escape should close the panel')
  check(await active(a) === 'history-button', 'closing the panel should focus "History"')
  check(await a.getAttribute('#history-button', 'aria-expanded') === 'false', 'the button should say the panel is closed')
  check(await a.locator('.cm-line[title]').count() === 0, 'closing the panel should take the colours away')
  const text = await serverText()

  // -- Vic, a viewer: the versions, no Save, no Restore ------------------------------------------
  pages.set('history-viewer-400', v)
  await v.goto(`${origin}/r/${roomId}#token=${viewerToken}`)
  await waitConnection(v, 'connected')
  check(await v.evaluate(() => window.collab.access) === 'view', 'Vic\'s page should be a viewer\'s')
  await v.click('#history-button')
  await waitLabels(v, ['First draft', ...restoreLabels], 'the versions')
  check(await v.locator('#history-save').isHidden(), 'a viewer should not see "Save version"')
  await v.locator('.version', { hasText: 'First draft' }).click()
  await v.locator('#history-preview-note', { hasText: `version #${savedId}` }).waitFor({ timeout: WAIT })
  check(await v.locator('#history-restore').isHidden(), 'a viewer should not see "Restore"')
  check(await v.evaluate(() => document.documentElement.scrollWidth <= innerWidth), 'the panel should fit 400 px')
  log('viewer sees the versions only')

  // -- a room with 500 versions: the first page, then the next, with the keyboard --------------
  await a.goto(`${origin}/r/${bigRoomId}`)
  await waitConnection(a, 'connected')
  await pressUntil(a, 'Tab', 'history-button', 20)
  const asked = Date.now()
  await a.keyboard.press('Enter')
  await until('the first page of versions', async () => (await a.locator('#history-list .version').count()) === PAGE)
  const firstPageMs = Date.now() - asked
  await until('the newest version to get the focus', async () => (await active(a)).startsWith('version '))
  const newest = await active(a)
  await a.keyboard.press('End')
  await pressUntil(a, 'Tab', 'history-more', 1)
  await a.keyboard.press('Enter')
  await until('the second page of versions', async () => (await a.locator('#history-list .version').count()) === 2 * PAGE)
  const firstOfSecond = await a.locator('#history-list .version').nth(PAGE).getAttribute('data-id')
  await until('the focus to move to the first new version', async () => (await active(a)) === `version ${firstOfSecond}`)
  await a.keyboard.press('ArrowUp')
  check(await active(a) === `version ${await a.locator('#history-list .version').nth(PAGE - 1).getAttribute('data-id')}`, 'ArrowUp should move up the list')
  log('500 versions', { firstPageMs, newest })

  console.log(JSON.stringify({
    result: { room: roomId, text, saved, savedId, firstPageMs, seconds: elapsed() }
  }))
})
