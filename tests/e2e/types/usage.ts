// Compiled by tests/e2e/types.test.mjs with `tsc --noEmit --strict` against the generated
// pkg/miaou_transport.d.ts, imported by package name as a user would. Every public method and
// option appears once; each `@ts-expect-error` line is a misuse the types must refuse (tsc
// fails on an expect-error line that compiles, so types that turned into `any` fail the test).
import init, { Transport, type TransportOptions, type PeerEvent, type CandidatePair, type ChannelInfo } from "miaou-transport";

export async function demo(): Promise<void> {
  await init();
  const options: TransportOptions = {
    signal: "ws://127.0.0.1:8080/ws",
    room: "lobby",
    iceServers: [
      { urls: "stun:127.0.0.1:3478" },
      { urls: ["turn:127.0.0.1:3478"], username: "u", credential: "p" },
    ],
    iceTransportPolicy: "relay",
    turnFromBridge: false,
    channel: "unreliable",
    maxMessageSize: 64 * 1024 * 1024,
    maxFrameSize: 16 * 1024,
    connectTimeoutMs: 10_000,
    closeTimeoutMs: 10_000,
    openTimeoutMs: 2_500,
  };
  const t: Transport = await Transport.connect(options);
  const me: string = t.peerId;
  const room: string = t.room;
  t.onPeer((event: PeerEvent) => {
    const kind: "joined" | "connected" | "disconnected" | "left" | "error" = event.type;
    console.log(kind, event.peerId, event.reason, me, room);
  });
  t.onMessage((peerId: string, data: string | Uint8Array) => {
    if (typeof data === "string") console.log(peerId, data.toUpperCase());
    else console.log(peerId, data.byteLength);
  });
  const peers: string[] = t.peers();
  for (const peer of peers) {
    await t.send(peer, "hello");
    await t.send(peer, new Uint8Array([1, 2, 3]));
    await t.send(peer, new ArrayBuffer(8));
    const pair: CandidatePair = await t.selectedCandidatePair(peer);
    const local: "host" | "srflx" | "prflx" | "relay" = pair.local.candidateType;
    console.log(local, pair.remote.address, pair.remote.port, pair.remote.protocol);
    const info: ChannelInfo = t.channelInfo(peer);
    const kind: "reliable" | "unreliable" = info.kind;
    const rtx: number | null = info.maxRetransmits;
    const buffered: number = t.bufferedAmount(peer);
    console.log(kind, rtx, info.label, info.ordered, info.maxPacketLifeTime, info.maxFrameSize, info.remoteMaxMessageSize, buffered);
  }
  await t.broadcast("to everyone");
  await t.broadcast(new Uint8Array(4));
  await t.close();

  // Misuses the types must refuse:
  // @ts-expect-error room is required
  await Transport.connect({ signal: "ws://127.0.0.1:8080/ws" });
  // @ts-expect-error channel is "reliable" | "unreliable"
  await Transport.connect({ ...options, channel: "fast" });
  // @ts-expect-error iceTransportPolicy is "all" | "relay"
  await Transport.connect({ ...options, iceTransportPolicy: "none" });
  // @ts-expect-error sizes are numbers of bytes
  await Transport.connect({ ...options, maxFrameSize: "64k" });
  // @ts-expect-error unknown options are refused (the JS API refuses them at run time too)
  await Transport.connect({ ...options, icetransportPolicy: "relay" });
  // @ts-expect-error send takes a string, Uint8Array or ArrayBuffer
  await t.send("peer", 42);
  // @ts-expect-error the peer id is a string
  await t.send(7, "hello");
  // @ts-expect-error connect resolves to a Transport, not to void
  const nothing: void = await Transport.connect(options);
  // @ts-expect-error peers() is a string array
  const count: number = t.peers();
  // @ts-expect-error message handlers get (peerId: string, data: string | Uint8Array)
  t.onMessage((peerId: number) => console.log(peerId));
  // @ts-expect-error a Transport comes from Transport.connect; the constructor takes no options
  new Transport(options);
  // @ts-expect-error channelInfo answers at once: it is not a Promise
  await t.channelInfo("peer").then(() => {});
  console.log(nothing, count);
}
