// The room's REST API as the page calls it: relative to the page (proxies, path prefixes), with the
// page's token, and with the server's JSON errors turned into one exception.

import { DENIED_STATUSES, withToken } from './access.js'

/** A REST call the server answered with an error status: `{error, detail}` of its JSON body. */
export class RequestFailed extends Error {
  constructor (status, code, detail) {
    const said = typeof detail === 'string' ? detail : (detail?.[0]?.msg ?? null)
    super(said || `the server answered ${status}${code ? ` (${code})` : ''}`)
    this.status = status
    this.code = code
    this.detail = detail
  }
}

/**
 * `request(path, {method, json, as})` for `api/rooms/<room>/<path>`: `as` is 'json' (the
 * default), 'text' or 'none'. A 401 or 403 is handed to `onDenied(status, detail)` too (the page
 * asks for a token), then thrown like any other error.
 */
export function roomApi ({ roomId, serverRoot, token, onDenied }) {
  const base = new URL(`api/rooms/${encodeURIComponent(roomId)}/`, serverRoot)
  return async function request (path, { method = 'GET', json, as = 'json' } = {}) {
    const headers = withToken(token(), json === undefined ? {} : { 'content-type': 'application/json' })
    const body = json === undefined ? undefined : JSON.stringify(json)
    const response = await fetch(new URL(path, base), { method, headers, body })
    if (!response.ok) {
      const problem = await response.json().catch(() => null)
      if (DENIED_STATUSES.has(response.status)) onDenied(response.status, problem?.detail)
      throw new RequestFailed(response.status, problem?.error ?? null, problem?.detail ?? null)
    }
    if (as === 'json') return response.json()
    if (as === 'text') return response.text()
    return null
  }
}
