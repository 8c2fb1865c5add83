// A test driver that hosts stock y-websocket clients and obeys JSON-line commands.
//
// Usage: node driver.mjs WS_URL
//
// Each stdin line is a command {"id": 1, "cmd": "open", "client": "a", ...}; each stdout line is
// the answer {"id": 1, "ok": true, "result": ...} or {"id": 1, "ok": false, "error": "..."}.
// Commands run concurrently and may answer out of order. The `wait*` commands answer once their
// condition holds; the caller owns the timeout. The driver exits when stdin closes.
//
// Every provider is created with `disableBc: true`: Node 20 has a global BroadcastChannel, and
// providers in one process would otherwise sync with each other without the server.

import { createHash } from 'node:crypto'
import { createInterface } from 'node:readline'

import * as decoding from 'lib0/decoding'
import * as prng from 'lib0/prng'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'

const MESSAGE_AWARENESS = 1
const TEXT_NAME = 'codemirror' // the Y.Text y-codemirror.next binds

const serverUrl = process.argv[2]
/** @type {Map<string, Client>} */
const clients = new Map()
/** Sockets not closed yet: the driver exits once they are. */
const sockets = new Set()

// -- one client ------------------------------------------------------------------------------

class Client {
  constructor (name, room, { url = serverUrl, awareness, maxBackoffTime, params } = {}) {
    this.name = name
    this.doc = new Y.Doc()
    this.text = this.doc.getText(TEXT_NAME)
    this.closes = [] // every 'connection-close': {code, reason}, or null for a local close
    this.terminal = [] // every 'closed' event: the server said not to reconnect
    this.connects = 0 // connection attempts ('connecting' statuses)
    this.echoes = [] // clocks of our own awareness state as the server sent it back
    this.provider = new WebsocketProvider(url, room, this.doc, {
      connect: false,
      disableBc: true,
      WebSocketPolyfill: WebSocket,
      ...(maxBackoffTime === undefined ? {} : { maxBackoffTime }),
      ...(params === undefined ? {} : { params })
    })
    const provider = this.provider
    if (awareness !== undefined) provider.awareness.setLocalState(awareness)
    provider.on('status', ({ status }) => {
      if (status === 'connecting') {
        this.connects++
        const ws = provider.ws
        sockets.add(ws)
        ws.addEventListener('message', (event) => this.onFrame(event.data))
        ws.addEventListener('close', () => {
          sockets.delete(ws)
          changed()
        })
      }
      changed()
    })
    provider.on('sync', changed)
    provider.on('connection-close', (event) => {
      this.closes.push(event === null ? null : { code: event.code, reason: event.reason })
      changed()
    })
    provider.on('closed', ({ code, reason }) => {
      this.terminal.push({ code, reason })
      changed()
    })
    provider.awareness.on('change', changed)
    this.doc.on('update', changed)
  }

  /** Note the awareness entries about ourselves in a frame, to see the server's echo. */
  onFrame (data) {
    const decoder = decoding.createDecoder(new Uint8Array(data))
    if (decoding.readVarUint(decoder) === MESSAGE_AWARENESS) {
      const update = decoding.createDecoder(decoding.readVarUint8Array(decoder))
      const count = decoding.readVarUint(update)
      for (let i = 0; i < count; i++) {
        const clientID = decoding.readVarUint(update)
        const clock = decoding.readVarUint(update)
        decoding.readVarString(update)
        if (clientID === this.doc.clientID) this.echoes.push(clock)
      }
    }
    changed()
  }

  get synced () {
    return this.provider.synced
  }

  states () {
    return Object.fromEntries(this.provider.awareness.getStates())
  }

  status () {
    const provider = this.provider
    return {
      connected: provider.wsconnected,
      synced: provider.synced,
      shouldConnect: provider.shouldConnect,
      connects: this.connects,
      closes: this.closes,
      terminal: this.terminal
    }
  }

  destroy () {
    this.provider.destroy()
    this.doc.destroy()
  }
}

const client = (name) => {
  const found = clients.get(name)
  if (found === undefined) throw new Error(`no client ${JSON.stringify(name)}`)
  return found
}

/** The text, or its UTF-16 length and the SHA-256 of its UTF-8 when `digest` is set. */
const textOf = (text, digest) =>
  digest
    ? { length: text.length, sha256: createHash('sha256').update(text, 'utf8').digest('hex') }
    : { text }

// -- waiting for conditions --------------------------------------------------------------------

/** @type {Set<{ condition: () => any, resolve: (value: any) => void, reject: (e: Error) => void }>} */
const waiters = new Set()
let checkScheduled = false

/** Something changed: re-check the waiting conditions once this burst of events is handled. */
function changed () {
  if (!checkScheduled && waiters.size > 0) {
    checkScheduled = true
    setImmediate(checkWaiters)
  }
}

function checkWaiters () {
  checkScheduled = false
  for (const waiter of waiters) {
    try {
      const value = waiter.condition()
      if (value !== undefined) {
        waiters.delete(waiter)
        waiter.resolve(value)
      }
    } catch (error) {
      waiters.delete(waiter)
      waiter.reject(error)
    }
  }
}

/** Resolve with `condition()` as soon as it returns something other than undefined. */
const until = (condition) =>
  new Promise((resolve, reject) => {
    waiters.add({ condition, resolve, reject })
    changed()
  })

const nextTurn = () => new Promise((resolve) => setImmediate(resolve))
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// -- commands ----------------------------------------------------------------------------------

const commands = {
  /** Create a client and connect it; unless `sync` is false, answer once it is synced. */
  async open ({ client: name, room, url, awareness, maxBackoffTime, params, sync = true }) {
    if (clients.has(name)) throw new Error(`client ${name} exists`)
    const created = new Client(name, room, { url, awareness, maxBackoffTime, params })
    clients.set(name, created)
    created.provider.connect()
    if (sync) await until(() => (created.synced ? true : undefined))
    // What it knew of the others at the moment it became synced.
    return { clientID: created.doc.clientID, states: created.states() }
  },

  insert ({ client: name, index, text }) {
    client(name).text.insert(index, text)
    return null
  },

  delete ({ client: name, index, length }) {
    client(name).text.delete(index, length)
    return null
  },

  text ({ client: name, digest = false }) {
    return textOf(client(name).text.toString(), digest)
  },

  /** Answer once every client in `clients` holds the same text (and `text`, if given). */
  waitText ({ clients: names, text, digest = false }) {
    const texts = names.map((name) => client(name).text)
    return until(() => {
      const first = texts[0].toString()
      if (text !== undefined && first !== text) return undefined
      if (!texts.every((other) => other.toString() === first)) return undefined
      return textOf(first, digest)
    })
  },

  /** Each client types the characters of its string, one at a time, at positions drawn from a
   * seeded generator, all clients taking turns with the event loop in between. */
  async type ({ strings, seed = 1 }) {
    const gen = prng.create(seed)
    const typists = Object.entries(strings).map(([name, chars]) => [client(name), [...chars]])
    const rounds = Math.max(...typists.map(([, chars]) => chars.length))
    for (let round = 0; round < rounds; round++) {
      for (const [typist, chars] of typists) {
        if (round < chars.length) {
          typist.text.insert(prng.uint32(gen, 0, typist.text.length), chars[round])
        }
      }
      await nextTurn()
    }
    return null
  },

  setAwareness ({ client: name, state }) {
    client(name).provider.awareness.setLocalState(state)
    return null
  },

  /** What the 15 s renewal timer of y-protocols does: the same state with a higher clock. */
  renewAwareness ({ client: name }) {
    const awareness = client(name).provider.awareness
    awareness.setLocalState(awareness.getLocalState())
    return { clock: awareness.meta.get(awareness.clientID).clock }
  },

  awareness ({ client: name }) {
    return { states: client(name).states() }
  },

  /** Answer once client `of` is present (or absent, with `present: false`) in the states. */
  waitAwareness ({ client: name, of, present = true }) {
    const awareness = client(name).provider.awareness
    return until(() =>
      awareness.getStates().has(of) === present ? { states: client(name).states() } : undefined
    )
  },

  /** Answer once the server sent back our own awareness entry with at least `clock`. */
  waitEcho ({ client: name, clock }) {
    const waiting = client(name)
    return until(() =>
      waiting.echoes.some((echoed) => echoed >= clock) ? { echoes: waiting.echoes } : undefined
    )
  },

  disconnect ({ client: name }) {
    client(name).provider.disconnect()
    return null
  },

  async connect ({ client: name }) {
    const connecting = client(name)
    connecting.provider.connect()
    await until(() => (connecting.synced ? true : undefined))
    return null
  },

  waitSynced ({ client: name }) {
    const waiting = client(name)
    return until(() => (waiting.synced ? waiting.status() : undefined))
  },

  /** Answer once the connection has closed `count` times in all. */
  waitClosed ({ client: name, count = 1 }) {
    const waiting = client(name)
    return until(() => (waiting.closes.length >= count ? waiting.status() : undefined))
  },

  status ({ client: name }) {
    return client(name).status()
  },

  /** The status after `ms` milliseconds: to see that nothing happened (e.g. no reconnect). */
  async statusAfter ({ client: name, ms }) {
    await delay(ms)
    return client(name).status()
  },

  /** Stop (or resume) reading from the socket, as a client on a stalled network would. */
  pause ({ client: name }) {
    client(name).provider.ws.pause()
    return null
  },

  resume ({ client: name }) {
    client(name).provider.ws.resume()
    return null
  },

  destroy ({ client: name }) {
    client(name).destroy()
    clients.delete(name)
    return null
  }
}

// -- the command loop --------------------------------------------------------------------------

const answer = (reply) => process.stdout.write(JSON.stringify(reply) + '\n')

async function run (line) {
  let id = null
  try {
    const { id: commandId, cmd, ...args } = JSON.parse(line)
    id = commandId
    const handler = commands[cmd]
    if (handler === undefined) throw new Error(`unknown command ${JSON.stringify(cmd)}`)
    answer({ id, ok: true, result: (await handler(args)) ?? null })
  } catch (error) {
    answer({ id, ok: false, error: String(error?.stack ?? error) })
  }
}

const input = createInterface({ input: process.stdin, crlfDelay: Infinity })
input.on('line', (line) => {
  if (line.trim() !== '') run(line)
})
input.on('close', async () => {
  for (const each of clients.values()) each.destroy()
  // Leave once the sockets have closed cleanly, without waiting for y-websocket's reconnect
  // timer (a no-op after destroy) to run out.
  await until(() => (sockets.size === 0 ? true : undefined))
  process.exit(0)
})
