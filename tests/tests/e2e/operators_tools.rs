//! Operators' standard tools against a real node: the gRPC health service (SERVING while
//! the node accepts work, NOT_SERVING once it is told to stop) and reflection (the
//! services and their methods, as a reflection-based client lists them).

use std::time::Duration;

use isms_e2e::TestNet;
use isms_e2e::isms_deploy::Topology;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const T: Duration = Duration::from_secs(30);

#[test]
fn health_goes_from_serving_to_not_serving_on_sigterm() {
    let net = TestNet::start(&Topology::uniform(&["44"], 1, 0));
    let (cert, key) = net.cert_of("province/44");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _in_runtime = rt.enter();
    let channel = net.channel(&cert, &key, "province/44");
    rt.block_on(async {
        let mut health = HealthClient::new(channel);
        for service in ["", "isms.v1.Operator", "isms.v1.Link"] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("check")
                .into_inner()
                .status();
            assert_eq!(status, ServingStatus::Serving, "{service:?}");
        }
        let unknown = health
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .expect_err("unknown service");
        assert_eq!(unknown.code(), tonic::Code::NotFound);

        let mut watch = health
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("watch")
            .into_inner();
        let first = tokio::time::timeout(T, watch.message())
            .await
            .expect("in time")
            .expect("stream")
            .expect("a status");
        assert_eq!(first.status(), ServingStatus::Serving);
        let pid = nix::unistd::Pid::from_raw(net.pid("province/44") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let next = tokio::time::timeout(T, watch.message())
            .await
            .expect("in time")
            .expect("stream")
            .expect("a status");
        assert_eq!(next.status(), ServingStatus::NotServing);
        // The stream ends with the node, which stops at once rather than at its drain
        // deadline.
        let end = tokio::time::timeout(T, watch.message()).await.expect("in time");
        assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    });
    let status = isms_e2e::eventually(Duration::from_secs(5), "province/44 to stop", || {
        net.exited("province/44")
    });
    assert!(status.success(), "{status}");
}

#[test]
fn reflection_lists_the_services_and_describes_the_operator_api() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let net = TestNet::start(&Topology::uniform(&["44"], 1, 0));
    let (cert, key) = net.cert_of("ministry");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _in_runtime = rt.enter();
    let channel = net.channel(&cert, &key, "ministry");
    rt.block_on(async {
        let mut client = ServerReflectionClient::new(channel);
        let ask = |m: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        let requests = tokio_stream::iter(vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "isms.v1.Operator".into(),
            )),
        ]);
        let mut answers = client
            .server_reflection_info(requests)
            .await
            .expect("reflection")
            .into_inner();
        let listed = answers.message().await.expect("stream").expect("answer");
        let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
            panic!("not a service list: {listed:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for want in ["isms.v1.Operator", "isms.v1.Link"] {
            assert!(names.iter().any(|n| n == want), "{names:?}");
        }
        let described = answers.message().await.expect("stream").expect("answer");
        let Some(MessageResponse::FileDescriptorResponse(files)) = described.message_response
        else {
            panic!("not a file: {described:?}");
        };
        let file: prost_types::FileDescriptorProto =
            prost::Message::decode(files.file_descriptor_proto[0].as_slice()).expect("a file");
        let operator = file
            .service
            .iter()
            .find(|s| s.name() == "Operator")
            .expect("the Operator service");
        let methods: Vec<&str> = operator.method.iter().map(|m| m.name()).collect();
        for want in ["IssueDirective", "OperationReport", "NetworkStatus"] {
            assert!(methods.contains(&want), "{methods:?}");
        }
    });
}
