//! Headless Chromium driven through chromedriver (WebDriver, fantoccini), for the tests
//! that look at pages: started on a free loopback port, stopped with the test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{StopOnDrop, need};

/// A browser session and the chromedriver behind it (stopped when this is dropped).
pub struct Browser {
    pub client: fantoccini::Client,
    _driver: StopOnDrop,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height` window; fails
    /// loudly if either is not installed.
    pub async fn open(width: u32, height: u32) -> Browser {
        need("chromedriver");
        need("chromium");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let driver = StopOnDrop(driver);
        let mut caps = serde_json::Map::new();
        // The flags Chromium needs as root on a machine with no outside network.
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--lang=zh-CN"],
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match fantoccini::ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => {
                    client
                        .set_window_size(width, height)
                        .await
                        .expect("window size");
                    return Browser {
                        client,
                        _driver: driver,
                    };
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "chromedriver: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Where a test keeps what it saw (screenshots): `target/tmp/artifacts/<name>/`.
pub fn artifacts(name: &str) -> std::path::PathBuf {
    // `target/<profile>/..`: the target directory, whatever the profile.
    let dir = crate::bin_dir()
        .parent()
        .expect("the target directory")
        .join("tmp/artifacts")
        .join(name);
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}
