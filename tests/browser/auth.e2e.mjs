// The editor page and the lobby on a server with access tokens, in real Chromium.
//
//   node tests/browser/auth.e2e.mjs BASE_URL ARTIFACTS_DIR ROOM EDITOR_TOKEN VIEWER_TOKEN ADMIN_TOKEN
//
// The tokens are for ROOM (the admin's for every room). Three people, each in a browser context of
// their own: Ada opens the room with `#token=<editor>` (1280x800) and types; Vic opens it with
// `#token=<viewer>` (400 px) and sees her text, cannot change it, and still shows his caret; Cy
// (400 px) has no token: he is refused, with nothing of the room shown, and gets in by pasting a
// token with the keyboard. Progress goes to stdout as JSON lines; the last one is
// {"result": {...}} for tests/test_web_auth_browser.py to check against the server. Screenshots
// are written to the artifacts folder on every run, failed or not. Exits 1 on the first failure.

import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { chromium } from 'playwright-core'
import { CHROMIUM, FLAGS, WAIT, check, elapsed, log, runAndFinish, until } from './harness.mjs'

const [baseUrl, artifacts, roomId, editorToken, viewerToken, adminToken, everyRoomToken] = process.argv.slice(2)
if (!everyRoomToken) {
  console.error('usage: node auth.e2e.mjs BASE_URL ARTIFACTS_DIR ROOM EDITOR_TOKEN VIEWER_TOKEN ADMIN_TOKEN EVERY_ROOM_EDITOR_TOKEN')
  process.exit(2)
}
const origin = new URL(baseUrl).origin
const roomUrl = `${origin}/r/${roomId}`

const editorText = (page) => page.evaluate(() => window.collab.view.state.doc.toString())
const activeId = (page) => page.evaluate(() => document.activeElement?.id || document.activeElement?.className)
const editorFocused = (page) => page.evaluate(() => document.activeElement?.classList.contains('cm-content'))
// A token for one room is kept under that room's key, a token for every room under the plain one.
const storedToken = (page, key = `collab.token.${roomId}`) => page.evaluate((name) => localStorage.getItem(name), key)

async function waitConnection (page, state) {
  try {
    await page.waitForFunction((wanted) => document.getElementById('connection').dataset.state === wanted, state, { timeout: WAIT })
  } catch (error) {
    const now = await page.locator('#connection').textContent().catch(() => '?')
    throw new Error(`timed out waiting for ${page.who}'s page to be ${state} (it says ${now})`, { cause: error })
  }
}

/** Wait until `page` shows a remote caret labelled `name`. */
async function waitCaret (page, name) {
  await until(`${page.who} to see a caret labelled ${name}`, () => page.evaluate((wanted) =>
    [...document.querySelectorAll('.cm-ySelectionInfo')].some((info) => info.textContent === wanted), name))
}

async function serverText (token) {
  const response = await fetch(`${origin}/api/rooms/${roomId}/text?name=codemirror`, { headers: { authorization: `Bearer ${token}` } })
  check(response.ok, `GET text answered ${response.status}`)
  return response.text()
}

async function copiedLink (page) {
  await page.evaluate(() => navigator.clipboard.writeText(''))
  await page.click('#share')
  await page.locator('#toast', { hasText: 'Link copied' }).waitFor({ timeout: WAIT })
  return page.evaluate(() => navigator.clipboard.readText())
}

await mkdir(artifacts, { recursive: true })
const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS })
const pages = new Map() // screenshot name -> page
const problems = []
const sockets = new Map() // person -> the WebSocket URLs their pages opened
const apiCalls = new Map() // person -> [path, Authorization header] of their pages' REST calls

async function newPerson (name, viewport) {
  const context = await browser.newContext({ viewport })
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin })
  sockets.set(name, [])
  apiCalls.set(name, [])
  context.on('request', (request) => {
    const url = new URL(request.url())
    if (url.pathname.startsWith('/api/')) apiCalls.get(name).push([url.pathname, request.headers().authorization ?? null])
    if (!['data:', 'blob:'].includes(url.protocol) && url.origin !== origin) {
      problems.push(`${name} requested ${request.url()}: the page must only talk to its server`)
    }
  })
  const page = await context.newPage()
  page.who = name
  page.on('websocket', (socket) => sockets.get(name).push(socket.url()))
  page.on('pageerror', (error) => problems.push(`${name}: uncaught ${error.stack ?? error}`))
  page.on('console', (message) => {
    if (message.type() === 'error') log('console error', { who: name, text: message.text() })
  })
  return { context, page }
}

await runAndFinish({ browser, pages, problems, artifacts }, async () => {
  const ada = await newPerson('Ada', { width: 1280, height: 800 })
  const vic = await newPerson('Vic', { width: 400, height: 760 })
  const cy = await newPerson('Cy', { width: 400, height: 760 })
  const a = ada.page
  const v = vic.page
  const c = cy.page

  // -- Ada: an editor's link. The token leaves the address bar and is remembered. -------------
  await a.goto(`${roomUrl}#token=${editorToken}`)
  pages.set('auth-editor-1280', a)
  await waitConnection(a, 'connected')
  check(a.url() === roomUrl, `the token should leave the address bar, not stay in ${a.url()}`)
  check(await storedToken(a) === editorToken, 'the token should be remembered in localStorage')
  check(sockets.get('Ada').every((url) => new URL(url).searchParams.get('token') === editorToken),
    `Ada's WebSocket should carry her token: ${sockets.get('Ada')}`)
  await until('the header to show the room\'s name (GET room with the token)', async () =>
    (await a.locator('#room-name').textContent()) === 'Auth session')
  check(await a.locator('#read-only').isHidden(), 'an editor\'s page should not say read-only')
  await a.fill('#user-name', 'Ada')
  await a.press('#user-name', 'Enter') // and back into the editor
  check(await editorFocused(a), 'Enter in the name field should move focus to the editor')
  const adaText = 'hello from Ada\nsecond line\n' // a plain-text room: no auto-indent
  await a.keyboard.type(adaText, { delay: 10 })
  check(await editorText(a) === adaText, 'Ada\'s typing should be in her editor')
  await until('the server to hold Ada\'s text', async () => (await serverText(editorToken)) === adaText)
  check(await copiedLink(a) === `${roomUrl}#token=${editorToken}`, 'Ada\'s share link should carry her token')
  log('editor typed', { length: adaText.length })

  // The lobby, in Ada's browser: the remembered token lists the room.
  const lobby = await ada.context.newPage()
  pages.set('auth-lobby-1280', lobby)
  await lobby.goto(`${origin}/`)
  await lobby.locator(`li.room[data-room-id="${roomId}"]`).waitFor({ timeout: WAIT })
  check(await lobby.locator('#access').isHidden(), 'the lobby should not ask Ada for a token')
  await lobby.screenshot({ path: path.join(artifacts, 'auth-lobby-1280.png') })
  pages.delete('auth-lobby-1280')
  await lobby.close()
  log('lobby lists the room')

  // -- Vic: a viewer's link. He sees Ada's text and caret, cannot change it, shows his. ------
  await v.goto(`${roomUrl}#token=${viewerToken}`)
  pages.set('auth-viewer-400', v)
  await waitConnection(v, 'connected')
  check(v.url() === roomUrl, `the token should leave Vic's address bar, not stay in ${v.url()}`)
  await until('Vic to get Ada\'s text', async () => (await editorText(v)) === adaText)
  check(await v.locator('#read-only').isVisible(), 'a viewer\'s page should say read-only')
  check(await v.evaluate(() => window.collab.access) === 'view', 'a viewer\'s page should be in view mode')
  check(await v.evaluate(() => window.collab.view.state.readOnly && !window.collab.view.contentDOM.isContentEditable),
    'a viewer\'s editor should be read-only and not editable')
  check(await v.locator('#language').isDisabled(), 'a viewer should not switch the room\'s language')
  await v.fill('#user-name', 'Vic')
  await v.press('#user-name', 'Enter')
  check(await editorFocused(v), 'Enter in the name field should focus a viewer\'s editor too')
  // He tries, by mouse and by keyboard: nothing changes, here or on the server.
  await v.locator('.cm-line').first().click()
  await v.keyboard.type('vandal', { delay: 10 })
  await v.keyboard.press('Enter')
  await v.keyboard.press('Backspace')
  await v.keyboard.press('Delete')
  await v.keyboard.press('Control+End')
  check(await editorText(v) === adaText, 'typing into a viewer\'s page must not change its text')
  // His caret still travels: Ada sees it labelled with his name.
  await waitCaret(a, 'Vic')
  await a.locator('#people .person', { hasText: 'Vic' }).waitFor({ timeout: WAIT })
  // Ada types on, and Vic's page follows (his own document never changed, so it sent nothing).
  await a.locator('.cm-content').click() // focus was on "Copy link"
  await a.keyboard.press('Control+End')
  await a.keyboard.type('third line, after Vic tried\n', { delay: 10 })
  const both = await until('Vic to get Ada\'s new line', async () => {
    const text = await editorText(v)
    return text === `${adaText}third line, after Vic tried\n` && text === await editorText(a) && text
  })
  check(!both.includes('vandal'), 'the viewer\'s typing must not reach anyone')
  check(await serverText(editorToken) === both, 'the server\'s text should be Ada\'s alone')
  // The keyboard way in: Escape, Shift+Tab to "Download", Tab back into the (read-only) editor.
  await v.keyboard.press('Escape')
  await v.keyboard.press('Shift+Tab')
  check(await activeId(v) === 'download', `Shift+Tab from a viewer's editor should reach "Download", not ${await activeId(v)}`)
  await v.keyboard.press('Tab')
  check(await editorFocused(v), 'Tab from "Download" should reach a viewer\'s editor')
  check(await v.evaluate(() => document.documentElement.scrollWidth <= innerWidth), 'the viewer\'s page should fit 400 px')
  check(await copiedLink(v) === `${roomUrl}#token=${viewerToken}`, 'Vic\'s share link should carry his viewer token')
  log('viewer reads only')

  // -- Cy: no token. Refused, nothing shown, asked for a token; the keyboard gets him in. ----
  await c.goto(`${origin}/`)
  pages.set('auth-lobby-denied-400', c)
  await c.locator('#access .access-message', { hasText: 'Access denied: this server needs a token' }).waitFor({ timeout: WAIT })
  check(await c.locator('li.room').count() === 0, 'a lobby without a token should list no rooms')
  await c.screenshot({ path: path.join(artifacts, 'auth-lobby-denied-400.png') })
  pages.delete('auth-lobby-denied-400')

  await c.goto(roomUrl)
  pages.set('auth-denied-400', c)
  await waitConnection(c, 'denied')
  check(await c.locator('#connection-label').textContent() === 'Access denied', 'the badge should say access is denied')
  check(await c.locator('#access .access-message').textContent() === 'Access denied: this room needs a token.',
    'the page should say the room needs a token')
  check(await editorText(c) === '', 'a refused page must show none of the room\'s text')
  check(await c.evaluate(() => document.documentElement.scrollWidth <= innerWidth), 'the refused page should fit 400 px')
  check(await activeId(c) === 'token-input', 'the token field should have the focus')
  await c.screenshot({ path: path.join(artifacts, 'auth-denied-400.png') })
  pages.delete('auth-denied-400')
  pages.set('auth-admin-400', c)
  // A wrong token first: still refused, and told so.
  await c.keyboard.type('not-a-token')
  await c.keyboard.press('Enter')
  await c.locator('#access .access-message', { hasText: 'token expired or invalid' }).waitFor({ timeout: WAIT })
  await waitConnection(c, 'denied')
  check(await editorText(c) === '', 'a refused page must still show none of the room\'s text')
  check(await activeId(c) === 'token-input', 'a refused token should put the focus back into the token field')
  // Then the admin's, with the keyboard; once it works the focus goes to the editor.
  await c.keyboard.type(adminToken)
  await c.keyboard.press('Enter')
  await waitConnection(c, 'connected')
  await until('Cy to get the room\'s text', async () => (await editorText(c)) === both)
  check(await editorFocused(c), 'the editor should have the focus once the token works')
  check(await c.locator('#access').isHidden(), 'the token form should go once the token works')
  check(await c.evaluate(() => window.collab.access) === 'edit', 'an admin\'s page should be editable')
  check(await storedToken(c, 'collab.token') === adminToken, 'the pasted token should be remembered')
  check(await copiedLink(c) === roomUrl, 'an admin\'s share link must not carry the admin token')
  log('denied, then let in')

  // An editor's token for every room opens this one, but a share link must not carry it.
  await c.goto('about:blank') // else only the fragment changes, and the page stays as it was
  await c.goto(`${roomUrl}#token=${everyRoomToken}`)
  await waitConnection(c, 'connected')
  check(await c.evaluate(() => window.collab.access) === 'edit', 'a token for every room should open this one')
  check(await copiedLink(c) === roomUrl, 'a share link must not carry a token for every room')
  check(await storedToken(c, 'collab.token') === everyRoomToken, 'the wide token should be remembered')
  // A token cut short (in a chat, say) is refused, and replaces nothing remembered.
  await c.goto('about:blank')
  await c.goto(`${roomUrl}#token=${everyRoomToken.slice(0, 30)}`)
  await waitConnection(c, 'denied')
  check(await storedToken(c, 'collab.token') === everyRoomToken, 'a token cut short must not replace the wide one')

  // Every REST call of the pages with a token carried it; the WebSocket of Vic's page too.
  for (const [who, token] of [['Ada', editorToken], ['Vic', viewerToken]]) {
    const calls = apiCalls.get(who)
    check(calls.length > 0, `${who}'s pages should have called the REST API`)
    for (const [pathname, header] of calls) check(header === `Bearer ${token}`, `${who}'s ${pathname} went with ${header}`)
    check(sockets.get(who).every((url) => new URL(url).searchParams.get('token') === token), `${who}'s sockets: ${sockets.get(who)}`)
  }
  check(sockets.get('Cy')[0] === `${origin.replace(/^http/, 'ws')}/ws/${roomId}`, `Cy's first socket should carry no token: ${sockets.get('Cy')[0]}`)

  // Last (its socket carries the cut token): one cut short replaces no room's own token either.
  await v.goto('about:blank')
  await v.goto(`${roomUrl}#token=${viewerToken.slice(0, 30)}`)
  await waitConnection(v, 'denied')
  check(await storedToken(v) === viewerToken, 'a token cut short must not replace this room\'s own')

  console.log(JSON.stringify({ result: { room: roomId, text: both, seconds: elapsed() } }))
})
