// What every browser script here shares: Chromium's flags, progress lines, checks and waits, and
// the ending (screenshots of every page, failed or not, then the exit code).

import path from 'node:path'

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'
export const FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'
]
export const WAIT = 10_000

const started = Date.now()

/** One JSON progress line on stdout. */
export const log = (step, extra = {}) => console.log(JSON.stringify({ step, ms: Date.now() - started, ...extra }))

/** Seconds since the script started, for its result line. */
export const elapsed = () => (Date.now() - started) / 1000

export function check (condition, message) {
  if (!condition) throw new Error(message)
}

/** Poll `probe` until it returns a truthy value; fail with `what` after `timeout` ms. */
export async function until (what, probe, timeout = WAIT) {
  const deadline = Date.now() + timeout
  while (Date.now() < deadline) {
    const last = await probe()
    if (last) return last
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}`)
}

/**
 * Run `body`, then screenshot every page in `pages` (name -> page) into `artifacts`, close the
 * browser and exit: 1 if `body` threw or anything was added to `problems`, else 0.
 */
export async function runAndFinish ({ browser, pages, problems, artifacts }, body) {
  let exitCode = 0
  try {
    await body()
  } catch (error) {
    exitCode = 1
    console.error(`FAILED: ${error.stack ?? error}`)
  } finally {
    for (const [name, page] of pages) {
      await page.screenshot({ path: path.join(artifacts, `${name}.png`) }).catch((error) => {
        console.error(`no screenshot ${name}: ${error.message}`)
      })
    }
    await browser.close()
  }
  if (problems.length) {
    exitCode = 1
    for (const problem of problems) console.error(`FAILED: ${problem}`)
  }
  process.exit(exitCode)
}
