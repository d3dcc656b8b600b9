// The TypeScript SDK (@daytonaio/sdk) against a Sandbar server: a smaller run of the Python
// conformance flow. Run by tests/e2e/test_sdk_conformance.py with DAYTONA_API_KEY,
// DAYTONA_API_URL and RUN_ID set; prints "ALL OK" at the end, exits non-zero on any failure.
import assert from 'node:assert/strict'
import http from 'node:http'
import { Daytona, DaytonaNotFoundError, DaytonaAuthenticationError } from '@daytonaio/sdk'

const run = process.env.RUN_ID ?? 'ts'
const apiUrl = process.env.DAYTONA_API_URL
const daytona = new Daytona({ apiKey: process.env.DAYTONA_API_KEY, apiUrl })

// GET through a preview URL: `*.localhost` is sent to 127.0.0.1 with the original Host header.
function previewGet(url, headers) {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port: u.port, path: u.pathname + u.search, headers: { ...headers, Host: u.host } },
      (res) => {
        let body = ''
        res.on('data', (c) => (body += c))
        res.on('end', () => resolve({ status: res.statusCode, body }))
      },
    )
    req.on('error', reject)
  })
}

const step = (name) => console.log(`- ${name}`)

const sandbox = await daytona.create({ labels: { suite: 'ts', run }, envVars: { TSV: 'ts-env' } }, { timeout: 120 })
try {
  step('create')
  assert.equal(sandbox.state, 'started')
  assert.equal(sandbox.labels['code-toolbox-language'], 'python')

  step('get by id and name')
  assert.equal((await daytona.get(sandbox.id)).id, sandbox.id)
  assert.equal((await daytona.get(sandbox.name)).id, sandbox.id)
  await assert.rejects(daytona.get(`missing-${run}`), DaytonaNotFoundError)

  step('exec')
  const r = await sandbox.process.executeCommand('echo $TSV; exit 2')
  assert.equal(r.exitCode, 2)
  assert.equal(r.result.trim(), 'ts-env')

  step('files')
  await sandbox.fs.uploadFile(Buffer.from('from node'), '/tmp/ts.txt')
  assert.equal((await sandbox.fs.downloadFile('/tmp/ts.txt')).toString(), 'from node')
  const names = (await sandbox.fs.listFiles('/tmp')).map((f) => f.name)
  assert.ok(names.includes('ts.txt'), names.join(','))
  await sandbox.fs.deleteFile('/tmp/ts.txt')
  await assert.rejects(sandbox.fs.getFileDetails('/tmp/ts.txt'), DaytonaNotFoundError)

  step('sessions')
  await sandbox.process.createSession('ts-s')
  await sandbox.process.executeSessionCommand('ts-s', { command: 'export K=v' })
  const sr = await sandbox.process.executeSessionCommand('ts-s', { command: 'echo $K' })
  assert.equal((sr.stdout ?? sr.output).trim(), 'v')
  await sandbox.process.deleteSession('ts-s')

  step('labels and list')
  await sandbox.setLabels({ suite: 'ts', run, extra: '1' })
  const listed = []
  for await (const s of daytona.list({ labels: { run, extra: '1' } })) listed.push(s.id)
  assert.deepEqual(listed, [sandbox.id])

  step('preview link')
  await sandbox.process.executeCommand(`mkdir -p /tmp/site && echo ts-preview-${run} > /tmp/site/index.html`)
  await sandbox.process.executeCommand('cd /tmp/site && nohup python3 -m http.server 8081 > /dev/null 2>&1 &')
  const link = await sandbox.getPreviewLink(8081)
  assert.equal(link.sandboxId ?? sandbox.id, sandbox.id)
  let res
  for (let i = 0; i < 50; i++) {
    res = await previewGet(link.url, { 'X-Daytona-Preview-Token': link.token })
    if (res.status === 200) break
    await new Promise((ok) => setTimeout(ok, 200))
  }
  assert.equal(res.status, 200)
  assert.ok(res.body.includes(`ts-preview-${run}`))
  assert.equal((await previewGet(link.url, {})).status, 401)

  step('stop and start')
  await sandbox.stop()
  assert.equal(sandbox.state, 'stopped')
  await sandbox.start()
  assert.equal(sandbox.state, 'started')

  step('wrong key')
  const bad = new Daytona({ apiKey: 'sb_wrong', apiUrl })
  await assert.rejects(bad.get(sandbox.id), DaytonaAuthenticationError)
} finally {
  await daytona.delete(sandbox)
}
console.log('ALL OK')
// socket.io-client keeps retrying the (absent) event stream and would keep node alive.
process.exit(0)
