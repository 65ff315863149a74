//! Operators' standard tools against a real node: the gRPC health service (SERVING while
//! the node accepts work, NOT_SERVING once it is told to stop) and reflection (the
//! services and their methods, as a reflection-based client lists them).

use std::time::Duration;

use isms_e2e::isms_deploy::Topology;
use isms_e2e::{StopOnDrop, TestNet};
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
        let end = tokio::time::timeout(T, watch.message())
            .await
            .expect("in time");
        assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    });
    // A client whose runtime nobody drives cannot answer the node's closing handshake
    // (HTTP/2 GOAWAY and PING), and the node would wait for it until its drain deadline:
    // the client goes with its runtime, as a client process would end.
    drop(_in_runtime);
    drop(rt);
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

/// A plain HTTP/1.0 GET on loopback: the body, if the answer is 200.
fn http_get(port: u16, path_and_query: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn a_real_prometheus_scrapes_the_nodes_metrics() {
    isms_e2e::need("prometheus");
    let options = isms_e2e::isms_deploy::Options {
        metrics: true,
        ..Default::default()
    };
    let net = TestNet::start_with(&Topology::uniform(&["44"], 1, 0), &options);
    let metrics = |id: &str| {
        net.node(id)
            .config
            .metrics
            .as_ref()
            .expect("metrics")
            .listen
    };
    // The text itself: Prometheus' conventions, no directive in a label.
    let id = net.issue(&["--to", "all", "--block-domain", "scraped.example"]);
    net.wait_all(&id, "executed", T);
    let text = isms_e2e::eventually(T, "the ministry's metrics", || {
        http_get(metrics("ministry").port(), "/metrics")
    });
    for want in [
        "# TYPE isms_link_up gauge",
        "isms_link_up{peer=\"province/44\",role=\"child\"} 1",
        "# TYPE isms_grpc_requests_total counter",
        "isms_grpc_requests_total{service=\"isms.v1.Operator\",method=\"IssueDirective\",code=\"Ok\"}",
        "# TYPE isms_grpc_request_duration_seconds histogram",
        "isms_store_bytes ",
        "isms_outbox_oldest_age_seconds{",
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
    assert!(!text.contains(&id), "a directive ID in a label");
    let counted = isms_e2e::eventually(T, "the directives counted", || {
        let t = http_get(metrics("ministry").port(), "/metrics")?;
        t.contains("isms_directive_targets{kind=\"disposal\",state=\"executed\"} 1")
            .then_some(t)
    });
    assert!(
        counted.contains("isms_directives{kind=\"disposal\"} 1"),
        "{counted}"
    );

    // A real Prometheus, on loopback, scraping every node each second.
    let dir = tempfile::tempdir().expect("tempdir");
    let targets: Vec<String> = net
        .net
        .nodes
        .iter()
        .map(|n| format!("'{}'", n.config.metrics.as_ref().expect("metrics").listen))
        .collect();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: isms\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .expect("config");
    let port = free_port();
    let prometheus = std::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
        .spawn()
        .expect("prometheus");
    let _stop = StopOnDrop(prometheus);
    let up = isms_e2e::eventually(Duration::from_secs(60), "samples in Prometheus", || {
        let body = http_get(port, "/api/v1/query?query=isms_link_up")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let results = v["data"]["result"].as_array()?.clone();
        // Each node's links: the ministry's child, the province's parent and child, the
        // enterprise's parent.
        (results.len() == 4).then_some(results)
    });
    assert!(up.iter().all(|r| r["value"][1] == "1"), "{up:?}");
    let issued = http_get(
        port,
        "/api/v1/query?query=sum(isms_grpc_requests_total%7Bmethod%3D%22IssueDirective%22%7D)",
    )
    .expect("query");
    let v: serde_json::Value = serde_json::from_str(&issued).expect("json");
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");
}

#[test]
fn the_service_units_verify_clean_with_the_generated_man_pages() {
    isms_e2e::need("systemd-analyze");
    isms_e2e::need("man");
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd");
    let dir = tempfile::tempdir().expect("tempdir");
    let man1 = dir.path().join("man/man1");
    std::fs::create_dir_all(&man1).expect("man dir");
    let bins = isms_e2e::bin_dir();
    for tier in ["ministry", "province", "enterprise"] {
        let program = format!("{tier}-node");
        let unit =
            std::fs::read_to_string(units.join(format!("isms-{program}.service"))).expect("unit");
        for hardening in [
            "Type=notify",
            "User=isms",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "StateDirectory=isms",
            "Restart=on-failure",
        ] {
            assert!(unit.contains(hardening), "{program}: {hardening}");
        }
        // The binaries where this build put them, so that verify finds them.
        let here = unit.replace("/usr/local/bin/", &format!("{}/", bins.display()));
        std::fs::write(dir.path().join(format!("isms-{program}.service")), here).expect("unit");
        let man = std::process::Command::new(bins.join(&program))
            .arg("man")
            .output()
            .expect("man page");
        assert!(man.status.success());
        let page = String::from_utf8_lossy(&man.stdout);
        assert!(page.contains(&format!(".TH {program} 1")), "{page}");
        std::fs::write(man1.join(format!("{program}.1")), &man.stdout).expect("page");
        let bash = std::process::Command::new(bins.join(&program))
            .args(["completions", "bash"])
            .output()
            .expect("completions");
        assert!(String::from_utf8_lossy(&bash.stdout).contains("serve"));
    }
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(
            ["ministry", "province", "enterprise"]
                .map(|t| dir.path().join(format!("isms-{t}-node.service"))),
        )
        .env("MANPATH", dir.path().join("man"))
        .output()
        .expect("systemd-analyze");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");
}

#[test]
fn a_node_tells_the_service_manager_it_is_ready_then_stopping() {
    let net = TestNet::generate(
        &Topology::uniform(&["44"], 1, 0),
        &isms_e2e::isms_deploy::Options::default(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("socket");
    socket.set_read_timeout(Some(T)).expect("timeout");
    let node = net.node("ministry");
    let child = std::process::Command::new(isms_e2e::bin_dir().join("ministry-node"))
        .args(["serve", "--config"])
        .arg(&node.config_path)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ministry-node");
    let mut child = StopOnDrop(child);
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let n = socket.recv(&mut buf).expect("a notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let status = child.0.wait().expect("exit");
    assert!(status.success(), "{status}");
}
