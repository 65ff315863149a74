//! Unit tests of `wire`.

use super::*;
use http_body_util::BodyExt;
use isms_proto::v1::{Ack, Envelope, frame};

fn ack(applied: u64) -> Pieces {
    Pieces::encode(&Frame {
        body: Some(frame::Body::Ack(Ack { applied })),
    })
}

/// A batch of one directive whose rules are large enough to be sent by reference, and
/// those rules.
fn large_batch() -> (Bytes, Pieces) {
    let rules = Bytes::from(vec![0x42; 3 * SHARED_PIECE]);
    let head = Envelope {
        seq: 1,
        id: "d1".into(),
        ..Default::default()
    };
    let copy = isms_proto::directive_envelope(&head, &rules, &["enterprise/e1".into()]);
    (rules, isms_proto::batch_frame(vec![copy], 7))
}

/// Everything `body` yields: its data joined, its trailers.
async fn drain(body: FrameBody) -> (Vec<Bytes>, Bytes, http::HeaderMap) {
    let mut body = Box::pin(body);
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("no body error");
        match frame.into_data() {
            Ok(d) => data.push(d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    let joined = Bytes::from(data.concat());
    (data, joined, trailers.expect("trailers"))
}

/// The gRPC messages in `bytes`, each after its prefix.
fn messages(mut bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert_eq!(bytes[0], 0, "uncompressed");
        let len = u32::from_be_bytes(bytes[1..5].try_into().expect("prefix")) as usize;
        out.push(Frame::decode(&bytes[5..5 + len]).expect("a frame"));
        bytes = &bytes[5 + len..];
    }
    out
}

#[tokio::test]
async fn frames_go_out_prefixed_with_large_pieces_shared_then_an_ok_status() {
    let (rules, batch) = large_batch();
    let whole = batch.to_bytes();
    let (tx, rx) = mpsc::channel(4);
    tx.send(Ok(ack(3))).await.expect("queued");
    tx.send(Ok(batch)).await.expect("queued");
    drop(tx);
    let (data, joined, trailers) = drain(FrameBody::new(rx, 1 << 20, Side::Parent)).await;
    assert!(
        data.iter().any(|d| d.as_ptr() == rules.as_ptr()),
        "the rules go out by reference"
    );
    let frames = messages(&joined);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1], Frame::decode(whole).expect("decodes"));
    assert_eq!(frames[0].encode_to_vec(), ack(3).to_bytes());
    assert_eq!(trailers["grpc-status"], "0");
    // Ready together: the ack and the batch's head in one data frame, then the rules,
    // then the batch's tail.
    assert_eq!(data.len(), 3);
}

#[tokio::test]
async fn an_error_ends_the_stream_with_its_status_and_nothing_after_it() {
    let (tx, rx) = mpsc::channel(4);
    tx.send(Ok(ack(1))).await.expect("queued");
    tx.send(Err(Status::invalid_argument("undecodable envelope")))
        .await
        .expect("queued");
    let (_, joined, trailers) = drain(FrameBody::new(rx, 1 << 20, Side::Parent)).await;
    assert_eq!(messages(&joined).len(), 1);
    assert_eq!(trailers["grpc-status"], "3");
    // Percent-encoded, as gRPC carries messages.
    assert_eq!(trailers["grpc-message"], "undecodable%20envelope");
    assert!(
        tx.send(Ok(ack(2))).await.is_err(),
        "closed after the status"
    );
}

/// An inbound stream of `side` reading `chunks`, then `trailers` if any.
fn inbound(chunks: Vec<Bytes>, trailers: Option<http::HeaderMap>, side: Side) -> Inbound {
    let frames = chunks
        .into_iter()
        .map(http_body::Frame::data)
        .chain(trailers.map(http_body::Frame::trailers))
        .map(Ok::<_, Status>);
    let body = http_body_util::StreamBody::new(tokio_stream::iter(frames));
    Inbound::new(Body::new(body), 1 << 20, side)
}

fn status_trailers(status: Status) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    status.add_header(&mut trailers).expect("a header");
    trailers
}

/// Everything `inbound` yields.
async fn read_all(mut inbound: Inbound) -> Vec<Result<Frame, Status>> {
    let mut out = Vec::new();
    while let Some(frame) = tokio_stream::StreamExt::next(&mut inbound).await {
        out.push(frame);
    }
    out
}

/// `frames` as a gRPC body: each after its prefix.
fn framed(frames: &[Pieces]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        out.push(0);
        out.extend_from_slice(&u32::try_from(f.len()).expect("small").to_be_bytes());
        out.extend_from_slice(&f.to_bytes());
    }
    out
}

#[tokio::test]
async fn frames_split_anyhow_across_data_frames_come_in_whole_then_the_stream_ends() {
    let bytes = framed(&[ack(1), ack(9), ack(u64::MAX)]);
    // One byte at a time, then in uneven runs: prefixes and messages straddle chunks.
    for split in [1, 3, 7, bytes.len()] {
        let chunks = bytes.chunks(split).map(Bytes::copy_from_slice).collect();
        let trailers = status_trailers(Status::ok(""));
        let frames: Vec<Frame> = read_all(inbound(chunks, Some(trailers), Side::Child))
            .await
            .into_iter()
            .map(|f| f.expect("a frame"))
            .collect();
        let applied: Vec<u64> = frames
            .iter()
            .map(|f| match f.body {
                Some(frame::Body::Ack(Ack { applied })) => applied,
                _ => panic!("an ack"),
            })
            .collect();
        assert_eq!(applied, [1, 9, u64::MAX], "split {split}");
    }
}

#[tokio::test]
async fn how_an_inbound_stream_ends() {
    let one = Bytes::from(framed(&[ack(1)]));
    let code = |frames: &[Result<Frame, Status>]| {
        frames.last().map(|f| f.as_ref().err().map(Status::code))
    };
    // A request (the parent reading its child) ends without trailers.
    let frames = read_all(inbound(vec![one.clone()], None, Side::Parent)).await;
    assert_eq!(frames.len(), 1);
    assert!(frames[0].is_ok());
    // A response must end with a status; an error status is the stream's error.
    let frames = read_all(inbound(vec![one.clone()], None, Side::Child)).await;
    assert_eq!(code(&frames), Some(Some(tonic::Code::Unknown)));
    let trailers = status_trailers(Status::permission_denied("not a child"));
    let frames = read_all(inbound(vec![one.clone()], Some(trailers), Side::Child)).await;
    assert_eq!(frames.len(), 2);
    assert_eq!(code(&frames), Some(Some(tonic::Code::PermissionDenied)));
    // Cut inside a frame.
    let frames = read_all(inbound(
        vec![one.slice(..one.len() - 1)],
        None,
        Side::Parent,
    ))
    .await;
    assert_eq!(code(&frames), Some(Some(tonic::Code::Internal)));
    // Over the limit: refused from its prefix, before the rest arrives.
    let mut huge = vec![0u8];
    huge.extend_from_slice(&(2u32 << 20).to_be_bytes());
    let frames = read_all(inbound(vec![Bytes::from(huge)], None, Side::Parent)).await;
    assert_eq!(code(&frames), Some(Some(tonic::Code::OutOfRange)));
    // Compressed, and nothing was agreed.
    let mut compressed = one.to_vec();
    compressed[0] = 1;
    let frames = read_all(inbound(vec![Bytes::from(compressed)], None, Side::Parent)).await;
    assert_eq!(code(&frames), Some(Some(tonic::Code::Internal)));
    // The frames before a bad one, in the same data frame, come first.
    let mut then_bad = one.to_vec();
    then_bad.extend_from_slice(&[1, 0, 0, 0, 0]);
    let frames = read_all(inbound(vec![Bytes::from(then_bad)], None, Side::Parent)).await;
    assert_eq!(frames.len(), 2);
    assert!(frames[0].is_ok());
    assert_eq!(code(&frames), Some(Some(tonic::Code::Internal)));
    // An empty message is a frame (an empty Frame), not the end.
    let frames = read_all(inbound(
        vec![Bytes::from_static(&[0; 5])],
        None,
        Side::Parent,
    ))
    .await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].as_ref().ok(), Some(&Frame::default()));
    // The connection dropped under the body: the peer went away, said as UNAVAILABLE.
    let failing = tokio_stream::iter([
        Ok(http_body::Frame::data(one.clone())),
        Err(Status::unknown("error reading a body from connection")),
    ]);
    let body = Body::new(http_body_util::StreamBody::new(failing));
    let frames = read_all(Inbound::new(body, 1 << 20, Side::Child)).await;
    assert_eq!(frames.len(), 2);
    assert!(frames[0].is_ok());
    assert_eq!(code(&frames), Some(Some(tonic::Code::Unavailable)));
    let message = frames[1].as_ref().err().map(Status::message);
    assert!(
        message.is_some_and(|m| m.contains("error reading a body")),
        "{message:?}"
    );
    // Not a frame.
    let mut garbage = vec![0u8, 0, 0, 0, 3];
    garbage.extend_from_slice(&[0xff; 3]);
    let frames = read_all(inbound(vec![Bytes::from(garbage)], None, Side::Parent)).await;
    assert_eq!(code(&frames), Some(Some(tonic::Code::Internal)));
}

/// A parent that answers every call with a status of its code alone, in the response
/// headers.
#[derive(Clone)]
struct TrailersOnly(tonic::Code);

impl tonic::server::NamedService for TrailersOnly {
    const NAME: &'static str = "isms.v1.Link";
}

impl Service<http::Request<Body>> for TrailersOnly {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Body>) -> Self::Future {
        std::future::ready(Ok(Status::new(self.0, "said in the headers").into_http()))
    }
}

/// What `open` makes of a trailers-only answer with `code` from a real HTTP/2 server.
async fn open_against(code: tonic::Code) -> Result<Vec<Result<Frame, Status>>, Status> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address");
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TrailersOnly(code))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("an endpoint")
        .connect()
        .await
        .expect("connected");
    let (_tx, rx) = mpsc::channel(1);
    let opened = open(channel, rx, 1 << 20).await;
    let result = match opened {
        Ok(inbound) => Ok(read_all(inbound).await),
        Err(status) => Err(status),
    };
    server.abort();
    result
}

#[tokio::test]
async fn a_trailers_only_answer_is_a_refusal_or_an_empty_stream() {
    let refused = open_against(tonic::Code::PermissionDenied).await;
    assert_eq!(
        refused.err().map(|s| s.code()),
        Some(tonic::Code::PermissionDenied)
    );
    // OK alone: the stream ended cleanly at once, not "ended without a status".
    let frames = open_against(tonic::Code::Ok).await.expect("opened");
    assert!(frames.is_empty(), "{frames:?}");
}

#[tokio::test]
async fn a_request_body_carries_the_frames_to_the_parents_reader_and_just_ends() {
    let (_, batch) = large_batch();
    let whole = Frame::decode(batch.to_bytes()).expect("decodes");
    let (tx, rx) = mpsc::channel(4);
    tx.send(Ok(ack(3))).await.expect("queued");
    tx.send(Ok(batch)).await.expect("queued");
    // The child's session ends its side with an error: the request just ends.
    tx.send(Err(Status::internal("done")))
        .await
        .expect("queued");
    let body = Body::new(FrameBody::new(rx, 1 << 20, Side::Child));
    let frames = read_all(Inbound::new(body, 1 << 20, Side::Parent)).await;
    let frames: Vec<Frame> = frames.into_iter().map(|f| f.expect("a frame")).collect();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1], whole);
    assert!(tx.send(Ok(ack(4))).await.is_err(), "closed after the end");
}

#[tokio::test]
async fn a_frame_over_the_limit_is_refused_not_sent() {
    let (tx, rx) = mpsc::channel(4);
    tx.send(Ok(Pieces::from(Bytes::from(vec![0; 100]))))
        .await
        .expect("queued");
    let (_, joined, trailers) = drain(FrameBody::new(rx, 64, Side::Parent)).await;
    assert!(joined.is_empty());
    assert_eq!(trailers["grpc-status"], "11");
}
