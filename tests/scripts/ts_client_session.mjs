// Follows a session with the TypeScript Durable Streams client, then appends one event with it.
// argv: CLIENT_MODULE_PATH URL COUNT — prints each event it receives as one JSON line; after
// COUNT events it appends {"type": "message_received"} through DurableStream and prints "appended".
import { pathToFileURL } from "node:url"

const [modulePath, url, count] = process.argv.slice(2)
const { stream, DurableStream } = await import(pathToFileURL(modulePath).href)

const wanted = Number(count)
let seen = 0
const res = await stream({ url, offset: "-1", live: true })
await new Promise((resolve, reject) => {
  res.subscribeJson(async (batch) => {
    for (const item of batch.items) {
      console.log(JSON.stringify(item))
      seen += 1
    }
    if (seen >= wanted) resolve()
  })
  res.closed?.catch?.(reject)
})
res.cancel?.()
const handle = new DurableStream({ url, contentType: "application/json", batching: false })
await handle.append(JSON.stringify({ type: "message_received", data: { from: "typescript" } }))
console.log("appended")
process.exit(0)
