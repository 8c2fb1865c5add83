#!/usr/bin/env node
// One load step against one y-websocket-compatible server: R rooms x M clients, each client
// typing keystroke-sized Y.Text inserts at a fixed rate, every other client of the room
// timing their arrival. Prints one JSON object on stdout.
//
// Protocol: each client is a real Y.Doc on a `ws` socket speaking y-protocols v1: it answers the
// server's SyncStep1 with a SyncStep2 from its doc, sends its own SyncStep1 and applies the
// SyncStep2 it gets back, publishes an awareness state and applies the ones it receives. Typing
// starts once every client is synced.
//
// Cheap where it can be, so that the generator is not what saturates:
// - Keystroke updates are made before the step by a Y.Doc with the client's own client id
//   (one Y.Text insert each, as an editor makes them) and packed into one buffer; during the
//   step a keystroke costs one ws.send.
// - A received update is decoded with Y.parseUpdateMeta (the struct ranges it holds: client id
//   and clock interval), not integrated: integrating is client CPU, not server work. Every
//   keystroke is one clock tick of its author, so a range [from, to) of author A is keystrokes
//   from..to-1 of A, whose send times are kept in this process. Per (receiver, author) the next
//   expected clock is tracked: duplicates (the reference server echoes updates to their author)
//   are ignored, and a gap is counted as an error.
// - After the step, a fresh client per room syncs from the server and checks that the server's
//   state vector holds exactly what was typed: nothing lost.

import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import WebSocket from 'ws'
import { readFileSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'

const MESSAGE_SYNC = 0
const MESSAGE_AWARENESS = 1
const SNIPPET =
  'def fan_out(room, update):\n    for peer in room.peers:\n        if peer is not origin:\n' +
  '            peer.send_update(update)\n    return len(room.peers)\n\n'

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' }, // room URL prefix, e.g. ws://127.0.0.1:8000/ws/
    rooms: { type: 'string', default: '1' },
    clients: { type: 'string', default: '2' }, // per room
    rate: { type: 'string', default: '10' }, // keystrokes per second per client
    warmup: { type: 'string', default: '2' },
    duration: { type: 'string', default: '5' },
    drain: { type: 'string', default: '3' },
    'server-pid': { type: 'string' }, // or several, comma-separated: their CPU and RSS add up
    prefix: { type: 'string', default: `bench-${process.pid}` },
    'connect-timeout': { type: 'string', default: '20' }
  },
  strict: true
})
if (!opts.url) throw new Error('--url is required')
const ROOMS = Number(opts.rooms)
const CLIENTS = Number(opts.clients)
const RATE = Number(opts.rate)
const WARMUP_MS = Number(opts.warmup) * 1000
const DURATION_MS = Number(opts.duration) * 1000
const DRAIN_MS = Number(opts.drain) * 1000
const SERVER_PIDS = opts['server-pid'] ? opts['server-pid'].split(',').map(Number) : null
const CLK_TCK = 100 // USER_HZ on Linux

// -- /proc sampling ----------------------------------------------------------------------------

const sum = (values) => values.reduce((total, value) => total + value, 0)

const procStatFields = (pid) => {
  // Fields after the ")" of the command name: utime is [11], stime (the kernel's) [12].
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

const procCpuSeconds = (pid) => {
  // utime + stime of every thread of the process
  const fields = procStatFields(pid)
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

const procKernelSeconds = (pid) => Number(procStatFields(pid)[12]) / CLK_TCK

const procRssMiB = (pid) => {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1')
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  return match ? Number(match[1]) / 1024 : NaN
}

const machineBusySeconds = () => {
  // Busy time of all cores together, from the first line of /proc/stat.
  const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number)
  return (user + nice + system + irq + softirq + steal) / CLK_TCK
}

const ownCpuSeconds = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}

// -- clients -----------------------------------------------------------------------------------

const authors = new Map() // Y client id -> Client

class Client {
  constructor (room, index) {
    this.room = room
    this.index = index
    this.doc = new Y.Doc()
    while (authors.has(this.doc.clientID)) this.doc.clientID = Math.floor(Math.random() * 2 ** 31)
    this.id = this.doc.clientID
    authors.set(this.id, this)
    this.awareness = new awarenessProtocol.Awareness(this.doc)
    this.sent = 0 // keystrokes sent; keystroke k has clock k
    this.sendTimes = null // Float64Array, by clock
    this.frames = null // packed frames and their offsets
    this.offsets = null
    this.nextExpected = new Map() // author id -> next clock expected from it
    this.synced = false
    this.closed = null
    this.socket = null
  }

  /** Make `count` keystroke frames with a Y.Doc that has this client's id. */
  prepare (count) {
    const typist = new Y.Doc()
    typist.clientID = this.id
    const text = typist.getText('codemirror')
    const frames = []
    let size = 0
    typist.on('update', (update) => {
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, MESSAGE_SYNC)
      syncProtocol.writeUpdate(encoder, update)
      const frame = encoding.toUint8Array(encoder)
      frames.push(frame)
      size += frame.length
    })
    for (let k = 0; k < count; k++) {
      text.insert(k, SNIPPET[(k + this.index * 7) % SNIPPET.length])
    }
    typist.destroy()
    this.frames = new Uint8Array(size)
    this.offsets = new Uint32Array(count + 1)
    let at = 0
    frames.forEach((frame, k) => {
      this.frames.set(frame, at)
      this.offsets[k] = at
      at += frame.length
    })
    this.offsets[count] = at
    this.sendTimes = new Float64Array(count)
  }

  connect (url) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url)
      this.socket = socket
      socket.binaryType = 'nodebuffer'
      socket.on('open', () => {
        // As y-websocket's provider: our SyncStep1, then our awareness state.
        const encoder = encoding.createEncoder()
        encoding.writeVarUint(encoder, MESSAGE_SYNC)
        syncProtocol.writeSyncStep1(encoder, this.doc)
        socket.send(encoding.toUint8Array(encoder))
        this.awareness.setLocalState({
          user: { name: `bench ${this.room.index}.${this.index}`, color: '#30bced' },
          cursor: null
        })
        socket.send(awarenessFrame(this.awareness, [this.id]))
      })
      socket.on('message', (data) => this.receive(data, resolve))
      socket.on('error', (error) => reject(error))
      socket.on('close', (code, reason) => {
        if (this.closed === null) this.closed = { code, reason: reason.toString() }
        reject(new Error(`closed ${code} before sync`))
      })
    })
  }

  receive (data, onSynced) {
    const receivedAt = performance.now()
    const decoder = decoding.createDecoder(data)
    const type = decoding.readVarUint(decoder)
    if (type === MESSAGE_AWARENESS) {
      awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), this)
      stats.awarenessMessages++
      return
    }
    if (type !== MESSAGE_SYNC) return
    const syncType = decoding.readVarUint(decoder)
    if (syncType === syncProtocol.messageYjsSyncStep1) {
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, MESSAGE_SYNC)
      syncProtocol.writeSyncStep2(encoder, this.doc, decoding.readVarUint8Array(decoder))
      this.socket.send(encoding.toUint8Array(encoder))
      return
    }
    const update = decoding.readVarUint8Array(decoder)
    if (syncType === syncProtocol.messageYjsSyncStep2 && !this.synced) {
      Y.applyUpdate(this.doc, update, this)
      this.synced = true
      onSynced()
      return
    }
    stats.frames++
    const meta = Y.parseUpdateMeta(update)
    for (const [author, from] of meta.from) {
      const sender = authors.get(author)
      if (sender === undefined) continue
      if (sender === this) {
        stats.echoed += meta.to.get(author) - from
        continue
      }
      const to = meta.to.get(author)
      const expected = this.nextExpected.get(author) ?? 0
      if (from > expected) stats.gaps++
      for (let clock = Math.max(from, expected); clock < to; clock++) {
        recordDelivery(sender.sendTimes[clock], receivedAt)
      }
      if (to > expected) this.nextExpected.set(author, to)
    }
  }

  sendDue (now, start) {
    const due = Math.min(this.offsets.length - 1, Math.floor(((now - start) * RATE) / 1000 + this.phase))
    while (this.sent < due && this.closed === null) {
      const k = this.sent
      this.sendTimes[k] = performance.now()
      this.socket.send(this.frames.subarray(this.offsets[k], this.offsets[k + 1]))
      this.sent++
      if (this.sendTimes[k] >= windowStart && this.sendTimes[k] < windowEnd) stats.sentInWindow++
    }
  }
}

const awarenessFrame = (awareness, clients) => {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, MESSAGE_AWARENESS)
  encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(awareness, clients))
  return encoding.toUint8Array(encoder)
}

// -- measurement -------------------------------------------------------------------------------

let windowStart = Infinity
let windowEnd = Infinity
let latencies = new Float64Array(1 << 16)
const stats = {
  frames: 0, // update frames received (after sync)
  deliveredInWindow: 0, // keystroke deliveries received inside the window
  latencyCount: 0, // deliveries of keystrokes sent inside the window
  sentInWindow: 0,
  echoed: 0,
  gaps: 0,
  awarenessMessages: 0
}

function recordDelivery (sentAt, receivedAt) {
  if (receivedAt >= windowStart && receivedAt < windowEnd) stats.deliveredInWindow++
  if (sentAt >= windowStart && sentAt < windowEnd) {
    if (stats.latencyCount === latencies.length) {
      const grown = new Float64Array(latencies.length * 2)
      grown.set(latencies)
      latencies = grown
    }
    latencies[stats.latencyCount++] = receivedAt - sentAt
  }
}

// The q-quantile of `expected` latencies of which only `sorted` arrived: the rest count as
// infinitely late.
const quantile = (sorted, expected, q) => {
  if (expected === 0) return null
  const index = Math.floor(q * expected)
  return index < sorted.length ? sorted[index] : Infinity
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// -- the step ----------------------------------------------------------------------------------

async function checkServerState (room) {
  // A fresh client syncs the room and compares the server's state vector with what was typed.
  const doc = new Y.Doc()
  const socket = new WebSocket(opts.url + room.name)
  socket.binaryType = 'nodebuffer'
  const state = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`check of ${room.name} timed out`)), 10000)
    socket.on('open', () => {
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, MESSAGE_SYNC)
      syncProtocol.writeSyncStep1(encoder, doc)
      socket.send(encoding.toUint8Array(encoder))
    })
    socket.on('message', (data) => {
      const decoder = decoding.createDecoder(data)
      if (decoding.readVarUint(decoder) !== MESSAGE_SYNC) return
      if (decoding.readVarUint(decoder) !== syncProtocol.messageYjsSyncStep2) return
      Y.applyUpdate(doc, decoding.readVarUint8Array(decoder))
      clearTimeout(timer)
      resolve(Y.decodeStateVector(Y.encodeStateVector(doc)))
    })
    socket.on('error', reject)
  })
  socket.close()
  let missing = 0
  let extra = 0
  for (const client of room.clients) {
    const held = state.get(client.id) ?? 0
    if (held < client.sent) missing += client.sent - held
    if (held > client.sent) extra += held - client.sent
  }
  const textLength = doc.getText('codemirror').length
  doc.destroy()
  return { missing, extra, textLength }
}

async function main () {
  const totalMs = WARMUP_MS + DURATION_MS
  const perClient = Math.ceil((RATE * totalMs) / 1000) + 2
  const rooms = []
  for (let r = 0; r < ROOMS; r++) {
    const room = { index: r, name: `${opts.prefix}-r${r}`, clients: [] }
    for (let c = 0; c < CLIENTS; c++) room.clients.push(new Client(room, c))
    rooms.push(room)
  }
  const clients = rooms.flatMap((room) => room.clients)
  let prepareSeconds = performance.now()
  for (const client of clients) client.prepare(perClient)
  prepareSeconds = (performance.now() - prepareSeconds) / 1000

  // Connect and sync everyone (room by room, rooms in parallel).
  let connectSeconds = performance.now()
  await Promise.race([
    Promise.all(rooms.map(async (room) => {
      for (const client of room.clients) await client.connect(opts.url + room.name)
    })),
    sleep(Number(opts['connect-timeout']) * 1000).then(() => { throw new Error('connect timed out') })
  ])
  // Let the join awareness traffic settle.
  await sleep(200)
  connectSeconds = (performance.now() - connectSeconds) / 1000
  const extensions = clients[0].socket.extensions
  for (const client of clients) {
    client.socket.removeAllListeners('close')
    client.socket.on('close', (code, reason) => {
      if (client.closed === null) client.closed = { code, reason: reason.toString() }
    })
  }

  // Type: spread the clients' phases over one keystroke interval.
  clients.forEach((client, i) => { client.phase = i / clients.length })
  const loopDelay = monitorEventLoopDelay({ resolution: 5 })
  const start = performance.now()
  windowStart = start + WARMUP_MS
  windowEnd = windowStart + DURATION_MS
  let marks = null
  let rssMax = 0
  let nextRssSample = windowStart
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now()
      if (marks === null && now >= windowStart) {
        marks = {
          at: now,
          server: SERVER_PIDS ? SERVER_PIDS.map(procCpuSeconds) : null,
          serverKernel: SERVER_PIDS ? SERVER_PIDS.map(procKernelSeconds) : null,
          own: ownCpuSeconds(),
          machine: machineBusySeconds()
        }
        loopDelay.enable()
      }
      if (SERVER_PIDS && now >= nextRssSample && now < windowEnd) {
        rssMax = Math.max(rssMax, sum(SERVER_PIDS.map(procRssMiB)))
        nextRssSample = now + 500
      }
      if (now >= windowEnd) {
        resolve()
        return
      }
      for (const client of clients) client.sendDue(now, start)
      setTimeout(tick, 1)
    }
    tick()
  })
  const end = performance.now()
  loopDelay.disable()
  const window = {
    seconds: (end - marks.at) / 1000,
    server: SERVER_PIDS ? SERVER_PIDS.map((pid, i) => procCpuSeconds(pid) - marks.server[i]) : null,
    serverKernel: SERVER_PIDS
      ? SERVER_PIDS.map((pid, i) => procKernelSeconds(pid) - marks.serverKernel[i])
      : null,
    own: ownCpuSeconds() - marks.own,
    machine: machineBusySeconds() - marks.machine
  }
  const rssEnd = SERVER_PIDS ? sum(SERVER_PIDS.map(procRssMiB)) : null
  const deliveredInWindow = stats.deliveredInWindow // freeze: the drain must not count

  // Drain: wait until every keystroke sent in the window reached every other client.
  const expected = stats.sentInWindow * (CLIENTS - 1)
  const drainStart = performance.now()
  while (stats.latencyCount < expected && performance.now() - drainStart < DRAIN_MS) {
    if (clients.some((client) => client.closed !== null)) break
    await sleep(5)
  }
  const undelivered = expected - stats.latencyCount
  const closed = clients.filter((client) => client.closed !== null)

  // Only once everything arrived everywhere has the server nothing left to take in.
  let check = { missing: null, extra: null, textLength: null }
  if (closed.length === 0 && undelivered === 0) {
    await sleep(100)
    const checks = await Promise.all(rooms.map(checkServerState))
    check = {
      missing: checks.reduce((sum, c) => sum + c.missing, 0),
      extra: checks.reduce((sum, c) => sum + c.extra, 0),
      textLength: checks.reduce((sum, c) => sum + c.textLength, 0)
    }
  }
  for (const client of clients) {
    client.awareness.destroy()
    client.socket.close()
  }

  const sorted = latencies.subarray(0, stats.latencyCount).sort()
  const typed = clients.reduce((sum, client) => sum + client.sent, 0)
  const result = {
    rooms: ROOMS,
    clients: CLIENTS,
    rate: RATE,
    extensions,
    prepare_s: prepareSeconds,
    connect_s: connectSeconds,
    window_s: window.seconds,
    keystrokes_typed: typed,
    sent_per_s: stats.sentInWindow / window.seconds,
    offered_per_s: expected / window.seconds,
    delivered_per_s: deliveredInWindow / window.seconds,
    frames_received: stats.frames,
    expected_deliveries: expected,
    undelivered, // keystrokes of the window not at every other client within the drain time
    gaps: stats.gaps,
    echoed: stats.echoed,
    p50_ms: quantile(sorted, expected, 0.5),
    p99_ms: quantile(sorted, expected, 0.99),
    max_ms: quantile(sorted, expected, 1 - 1e-12),
    server_cpu: window.server === null ? null : sum(window.server) / window.seconds,
    server_cpu_each: window.server === null ? null : window.server.map((cpu) => cpu / window.seconds),
    server_kernel_cpu: window.serverKernel === null ? null : sum(window.serverKernel) / window.seconds,
    server_rss_mib: rssEnd,
    server_rss_max_mib: SERVER_PIDS ? rssMax : null,
    gen_cpu: window.own / window.seconds,
    machine_cpu: window.machine / window.seconds,
    gen_loop_delay_p99_ms: loopDelay.percentile(99) / 1e6,
    closed: closed.length,
    close_codes: [...new Set(closed.map((client) => client.closed.code))],
    server_missing: check.missing,
    server_extra: check.extra,
    text_length: check.textLength
  }
  process.stdout.write(JSON.stringify(result, (_, v) => (v === Infinity ? 'inf' : v)) + '\n')
  // Let the close frames go out.
  await sleep(100)
  process.exit(0)
}

main().catch((error) => {
  process.stderr.write(`loadgen: ${error.stack ?? error}\n`)
  process.exit(1)
})
