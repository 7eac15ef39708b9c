//! mDNS discovery in one process, in a network namespace each test creates for itself (a veth
//! pair with 198.18.0.1/24 on one end, a multicast and a default route) so that nothing
//! reaches a real network: the test re-runs itself there with `ip netns exec`. Needs root
//! (CI and `npm test` run as root); skipped with a message otherwise.
//!
//! - mdns-sd (our [`Discovery`]) and webrtc-rs's own mDNS resolver share UDP port 5353 in one
//!   process (webrtc-rs#183 was about them fighting over it): a peer connection resolves the
//!   other's `<uuid>.local` candidate while an advertisement is published and browsed, and
//!   advertisements made afterwards are still found;
//! - what the network sends is never trusted: malformed TXT records are ignored, and a record
//!   whose TTL runs out (an advertiser that vanished without a goodbye) is removed.

use miaou_transport::discovery::{BrowseEvent, Browser, Discovery, NodeInfo, NodeKind};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

const CHILD: &str = "MIAOU_DISCOVERY_NETNS";
const WAIT: Duration = Duration::from_secs(15);

/// Runs `test` (this binary's test of that name) inside a fresh namespace, or, when already
/// inside one, returns `true` so the caller runs the body.
fn inside_namespace(test: &str) -> bool {
    if std::env::var(CHILD).is_ok() {
        return true;
    }
    let uid = Command::new("id").arg("-u").output().expect("id runs");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("SKIPPED: needs root to create a network namespace");
        return false;
    }
    let ns = format!("md-{}-{test}", std::process::id());
    let ns = &ns[..ns.len().min(40)];
    let ip = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().expect("ip runs");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["netns", "add", ns]);
    struct Delete<'a>(&'a str);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", self.0]).status();
        }
    }
    let _delete = Delete(ns);
    for args in [
        &["link", "set", "lo", "up"][..],
        &["link", "add", "va", "type", "veth", "peer", "name", "vb"],
        &["addr", "add", "198.18.0.1/24", "dev", "va"],
        &["link", "set", "va", "up"],
        &["link", "set", "vb", "up"],
        &["route", "add", "224.0.0.0/4", "dev", "va"],
        &["route", "add", "default", "dev", "va"],
    ] {
        let mut full = vec!["-n", ns];
        full.extend_from_slice(args);
        ip(&full);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let status = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .status()
        .expect("ip netns exec runs");
    assert!(status.success(), "{test} failed inside its namespace");
    false
}

async fn wait_for<T>(
    browser: &mut Browser,
    what: &str,
    mut pick: impl FnMut(&BrowseEvent) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let event = browser.next_event().await.expect("daemon running");
            if let Some(value) = pick(&event) {
                return value;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{what} not seen within {WAIT:?}"))
}

fn found(id: &str) -> impl FnMut(&BrowseEvent) -> Option<()> + '_ {
    move |e| matches!(e, BrowseEvent::Found(n) if n.info.node_id == id).then_some(())
}

fn removed(id: &str) -> impl FnMut(&BrowseEvent) -> Option<()> + '_ {
    move |e| matches!(e, BrowseEvent::Removed(n) if n.info.node_id == id).then_some(())
}

async fn peer(mode: MulticastDnsMode) -> Arc<RTCPeerConnection> {
    let mut settings = SettingEngine::default();
    settings.set_ice_multicast_dns_mode(mode);
    settings.set_prflx_acceptance_min_wait(Some(Duration::ZERO));
    let api = APIBuilder::new().with_setting_engine(settings).build();
    Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .expect("peer connection"),
    )
}

/// The SDP once ICE gathering is complete (so it carries every candidate).
async fn gathered(pc: &RTCPeerConnection, description: RTCSessionDescription) -> String {
    let mut done = pc.gathering_complete_promise().await;
    pc.set_local_description(description)
        .await
        .expect("local description");
    tokio::time::timeout(WAIT, done.recv())
        .await
        .expect("gathering completes");
    pc.local_description().await.expect("local description").sdp
}

#[test]
fn mdns_sd_and_webrtc_rs_mdns_share_port_5353_in_one_process() {
    if !inside_namespace("mdns_sd_and_webrtc_rs_mdns_share_port_5353_in_one_process") {
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        // mdns-sd first: daemon, an advertisement, a browser.
        let mdns = Discovery::new().unwrap();
        let mut browser = mdns.browse().unwrap();
        let first = NodeInfo::node("coexist", 4001);
        let ad = mdns.advertise(&first, &[]).unwrap();
        wait_for(
            &mut browser,
            "the first advertisement",
            found(&first.node_id),
        )
        .await;

        // Then two webrtc-rs peers on the same port 5353: `hidden` publishes its host address
        // only as `<uuid>.local` (as Chromium does), `resolver` resolves it (our backend's
        // setting). `hidden` never learns `resolver`'s candidates, so the only way the two can
        // connect is `resolver` resolving the `.local` name and sending the first checks.
        let hidden = peer(MulticastDnsMode::QueryAndGather).await;
        let resolver = peer(MulticastDnsMode::QueryOnly).await;
        let channel = hidden.create_data_channel("coexist", None).await.unwrap();
        let (opened_tx, opened) = tokio::sync::oneshot::channel();
        let opened_tx = std::sync::Mutex::new(Some(opened_tx));
        channel.on_open(Box::new(move || {
            if let Some(tx) = opened_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            Box::pin(async {})
        }));
        let offer = hidden.create_offer(None).await.unwrap();
        let offer_sdp = gathered(&hidden, offer).await;
        let candidates: Vec<&str> = offer_sdp
            .lines()
            .filter(|l| l.starts_with("a=candidate"))
            .collect();
        assert!(
            candidates.iter().any(|c| c.contains(".local ")),
            "no .local candidate: {candidates:?}"
        );
        assert!(
            !offer_sdp.contains("198.18.0.1"),
            "host address not hidden: {candidates:?}"
        );

        resolver
            .set_remote_description(RTCSessionDescription::offer(offer_sdp).unwrap())
            .await
            .unwrap();
        let answer = resolver.create_answer(None).await.unwrap();
        let answer_sdp = gathered(&resolver, answer).await;
        let without_candidates: String = answer_sdp
            .lines()
            .filter(|l| !l.starts_with("a=candidate"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        hidden
            .set_remote_description(RTCSessionDescription::answer(without_candidates).unwrap())
            .await
            .unwrap();
        tokio::time::timeout(WAIT, opened)
            .await
            .expect("the data channel opens through the resolved .local candidate")
            .unwrap();

        // mdns-sd still works with webrtc-rs's sockets on the same port: a new advertisement
        // is found, and the first one's goodbye is heard.
        let second = NodeInfo::bridge(4002);
        let ad2 = mdns.advertise(&second, &[]).unwrap();
        // Its addresses arrive per interface (loopback and veth): wait for the LAN one.
        let url = "ws://198.18.0.1:4002/ws";
        let node = wait_for(&mut browser, "the second advertisement", |e| match e {
            BrowseEvent::Found(n) | BrowseEvent::Updated(n)
                if n.info.node_id == second.node_id
                    && n.signaling_urls.iter().any(|u| u == url) =>
            {
                Some(n.clone())
            }
            _ => None,
        })
        .await;
        assert_eq!(node.info.kind, NodeKind::Bridge);
        assert_eq!(node.signaling_url(), Some(url), "LAN address first");
        ad.close().await;
        wait_for(
            &mut browser,
            "the first advertisement's goodbye",
            removed(&first.node_id),
        )
        .await;
        ad2.close().await;
        hidden.close().await.unwrap();
        resolver.close().await.unwrap();
    });
}

/// Minimal DNS message writer for hand-made mDNS responses (RFC 1035 §4, RFC 6762 §18).
#[derive(Default)]
struct Response {
    records: Vec<u8>,
    count: u16,
}

impl Response {
    fn name(out: &mut Vec<u8>, name: &str) {
        for label in name.trim_end_matches('.').split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
    }

    fn record(&mut self, name: &str, rtype: u16, unique: bool, ttl: u32, rdata: &[u8]) {
        Self::name(&mut self.records, name);
        self.records.extend_from_slice(&rtype.to_be_bytes());
        let class: u16 = if unique { 0x8001 } else { 0x0001 };
        self.records.extend_from_slice(&class.to_be_bytes());
        self.records.extend_from_slice(&ttl.to_be_bytes());
        self.records
            .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.records.extend_from_slice(rdata);
        self.count += 1;
    }

    /// PTR, SRV, TXT (raw strings) and A records of one instance, all with `ttl` seconds.
    fn instance(&mut self, instance: &str, host: &str, port: u16, txt: &[&[u8]], ttl: u32) {
        let full = format!("{instance}._miaou._tcp.local.");
        let mut ptr = Vec::new();
        Self::name(&mut ptr, &full);
        self.record("_miaou._tcp.local.", 12, false, ttl, &ptr);
        let mut srv = vec![0, 0, 0, 0];
        srv.extend_from_slice(&port.to_be_bytes());
        Self::name(&mut srv, host);
        self.record(&full, 33, true, ttl, &srv);
        let mut strings = Vec::new();
        for s in txt {
            strings.push(s.len() as u8);
            strings.extend_from_slice(s);
        }
        self.record(&full, 16, true, ttl, &strings);
        self.record(host, 1, true, ttl, &[198, 18, 0, 1]);
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = vec![0, 0, 0x84, 0x00, 0, 0];
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&self.records);
        out
    }
}

/// Sends `packet` as an mDNS response: from port 5353 (RFC 6762 §6, §11) to 224.0.0.251.
fn multicast(packet: &[u8]) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket
        .bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 5353)).into())
        .unwrap();
    socket
        .set_multicast_if_v4(&Ipv4Addr::new(198, 18, 0, 1))
        .unwrap();
    socket.set_multicast_ttl_v4(255).unwrap();
    let to = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353);
    socket.send_to(packet, &to.into()).unwrap();
}

#[test]
fn malformed_txt_is_ignored_and_an_advertiser_gone_silent_expires_with_its_ttl() {
    if !inside_namespace(
        "malformed_txt_is_ignored_and_an_advertiser_gone_silent_expires_with_its_ttl",
    ) {
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mdns = Discovery::new().unwrap();
        let mut browser = mdns.browse().unwrap();
        // Let the daemon open its sockets before anything is sent.
        let probe = NodeInfo::node("ready", 4000);
        let ready = mdns.advertise(&probe, &[]).unwrap();
        wait_for(&mut browser, "the daemon", found(&probe.node_id)).await;
        ready.close().await;

        let good_txt = |id: &'static str| -> Vec<Vec<u8>> {
            [
                "txtvers=1".to_owned(),
                "kind=node".to_owned(),
                format!("id={id}"),
                "room=r".to_owned(),
                "t=1".to_owned(),
                "ws=/ws".to_owned(),
            ]
            .into_iter()
            .map(String::into_bytes)
            .collect()
        };
        let mut bad = Response::default();
        // Not UTF-8, wrong version, unknown kind, no id, room with a control character,
        // a key with no value, an empty TXT, and a path with a zero port.
        let cases: Vec<(&str, Vec<&[u8]>, u16)> = vec![
            (
                "bad-utf8",
                vec![b"txtvers=1", b"kind=\xff\xfe", b"id=x", b"t=1", b"ws=/ws"],
                9,
            ),
            ("bad-version", vec![b"txtvers=7", b"kind=node"], 9),
            (
                "bad-kind",
                vec![b"txtvers=1", b"kind=toaster", b"id=x", b"t=1", b"ws=/ws"],
                9,
            ),
            (
                "bad-id",
                vec![b"txtvers=1", b"kind=bridge", b"t=1", b"ws=/ws"],
                9,
            ),
            (
                "bad-room",
                vec![
                    b"txtvers=1",
                    b"kind=node",
                    b"id=x",
                    b"room=a\x07",
                    b"t=1",
                    b"ws=/ws",
                ],
                9,
            ),
            ("bad-novalue", vec![b"txtvers", b"kind=node"], 9),
            ("bad-empty", vec![b""], 9),
            (
                "bad-port",
                vec![b"txtvers=1", b"kind=bridge", b"id=x", b"t=1", b"ws=/ws"],
                0,
            ),
        ];
        for (name, txt, port) in &cases {
            bad.instance(name, &format!("{name}.local."), *port, txt, 120);
        }
        // One valid instance with a 2-second TTL, never refreshed: its advertiser "vanished".
        let mut short = Response::default();
        let txt = good_txt("shortlived");
        let txt: Vec<&[u8]> = txt.iter().map(Vec::as_slice).collect();
        short.instance("node-shortlived", "shortlived.local.", 4100, &txt, 2);
        multicast(&bad.bytes());
        multicast(&short.bytes());

        let node = wait_for(
            &mut browser,
            "the valid short-lived instance",
            |e| match e {
                BrowseEvent::Found(n) => Some(n.clone()),
                _ => None,
            },
        )
        .await;
        assert_eq!(
            node.info.node_id, "shortlived",
            "only the valid instance is reported"
        );
        assert_eq!(node.signaling_url(), Some("ws://198.18.0.1:4100/ws"));
        let started = std::time::Instant::now();
        wait_for(
            &mut browser,
            "the expiry of the short-lived instance",
            |e| match e {
                BrowseEvent::Removed(n) if n.info.node_id == "shortlived" => Some(()),
                BrowseEvent::Found(n) => panic!("unexpected instance {n:?}"),
                _ => None,
            },
        )
        .await;
        let expired_after = started.elapsed();
        assert!(expired_after < Duration::from_secs(5), "{expired_after:?}");
        assert!(browser.nodes().is_empty(), "{:?}", browser.nodes());

        // The daemon and the browser still work.
        let after = NodeInfo::node("after", 4200);
        let ad = mdns.advertise(&after, &[]).unwrap();
        wait_for(
            &mut browser,
            "a real advertisement after the garbage",
            found(&after.node_id),
        )
        .await;
        ad.close().await;
        mdns.shutdown().await;
    });
}
