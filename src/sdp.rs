//! The two SDP facts this crate needs, read and written as text: the `a=max-message-size`
//! attribute of the data channel m-section (RFC 8841 §6). Pure string code, no SDP parser.

/// `a=max-message-size` assumed when the attribute is absent: 64 KiB (RFC 8841 §6.1).
pub const DEFAULT_REMOTE_MAX_MESSAGE_SIZE: usize = 64 * 1024;

const ATTRIBUTE: &str = "a=max-message-size:";

/// The largest message, in bytes, the author of `sdp` accepts on its data channels.
///
/// Absent attribute: [`DEFAULT_REMOTE_MAX_MESSAGE_SIZE`]. Value 0 means "no limit"
/// (RFC 8841 §6.1) and is returned as `usize::MAX`. An unparsable value is treated as absent.
pub fn max_message_size(sdp: &str) -> usize {
    for line in sdp.lines() {
        if let Some(value) = line.trim_end().strip_prefix(ATTRIBUTE) {
            return match value.trim().parse::<u64>() {
                Ok(0) => usize::MAX,
                Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
                Err(_) => DEFAULT_REMOTE_MAX_MESSAGE_SIZE,
            };
        }
    }
    DEFAULT_REMOTE_MAX_MESSAGE_SIZE
}

/// Returns `sdp` with `a=max-message-size:bytes` in its `m=application` section, unless the
/// section already has the attribute.
///
/// Why: webrtc-rs 0.17 omits the attribute, so a browser assumes 64 KiB = 65 536 bytes, while
/// webrtc-rs's receive buffer holds 65 535: one such message silently closes the channel.
/// Advertising our real limit makes the browser refuse larger messages instead.
pub fn advertise_max_message_size(sdp: &str, bytes: usize) -> String {
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(sdp.len() + 32);
    let mut in_application = false;
    let mut inserted = false;
    for line in sdp.split_inclusive('\n') {
        let bare = line.trim_end();
        if bare.starts_with("m=") {
            in_application = bare.starts_with("m=application");
        }
        if in_application && bare.starts_with(ATTRIBUTE) {
            return sdp.to_owned();
        }
        out.push_str(line);
        if in_application && !inserted && bare.starts_with("a=sctp-port:") {
            if !line.ends_with('\n') {
                out.push_str(eol);
            }
            out.push_str(&format!("{ATTRIBUTE}{bytes}{eol}"));
            inserted = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEBRTC_RS_ANSWER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
        a=mid:0\r\na=sctp-port:5000\r\n";

    #[test]
    fn absent_attribute_means_64_kib() {
        assert_eq!(max_message_size(WEBRTC_RS_ANSWER), 65_536);
    }

    #[test]
    fn reads_browser_values_and_zero_means_unlimited() {
        assert_eq!(
            max_message_size("m=application 9 x\r\na=max-message-size:262144\r\n"),
            262_144
        );
        assert_eq!(max_message_size("a=max-message-size:0\n"), usize::MAX);
        assert_eq!(max_message_size("a=max-message-size:junk\n"), 65_536);
    }

    #[test]
    fn inserts_after_sctp_port_once() {
        let out = advertise_max_message_size(WEBRTC_RS_ANSWER, 65_535);
        assert!(
            out.ends_with("a=sctp-port:5000\r\na=max-message-size:65535\r\n"),
            "{out}"
        );
        assert_eq!(max_message_size(&out), 65_535);
        assert_eq!(
            advertise_max_message_size(&out, 1),
            out,
            "existing attribute is kept"
        );
    }

    #[test]
    fn leaves_sdp_without_application_section_alone() {
        let audio = "v=0\r\nm=audio 9 RTP/AVP 0\r\na=sctp-port:5000\r\n";
        assert_eq!(advertise_max_message_size(audio, 10), audio);
    }
}
