//! The web console in a real browser (headless Chromium through chromedriver): sign in
//! with a one-time link (once only), issue a directive in the form (a bad domain first:
//! the CLI's error, nothing stored), watch it reach `executed` on its page without a
//! reload while a province confirms it in another window, return one with an empty reason
//! (the CLI's error), a viewer without the issue form whose forged post is refused and
//! audited; a screenshot of each page at 1366×768 under `target/tmp/artifacts/console/`.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use isms_e2e::browser::Browser;
use isms_e2e::isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, ok};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// Saves a screenshot of the page and checks it fits 1366 pixels across.
async fn shot(c: &Client, name: &str) {
    let width = c
        .execute("return document.documentElement.scrollWidth;", vec![])
        .await
        .expect("width");
    assert!(
        width.as_u64().unwrap_or(9999) <= 1366,
        "{name}: {width} px wide"
    );
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}");
    std::fs::write(
        isms_e2e::browser::artifacts("console").join(format!("{name}.png")),
        png,
    )
    .expect("keep it");
}

/// The page's visible text (read by script: an element found before a navigation would be
/// stale after it).
async fn text(c: &Client) -> String {
    c.execute(
        "return document.body ? document.body.innerText : '';",
        vec![],
    )
    .await
    .ok()
    .and_then(|v| v.as_str().map(str::to_string))
    .unwrap_or_default()
}

/// Waits until the page's text holds `want` (bounded), loading `reload` again each time
/// for a page that is not live; the text.
async fn wait_for(c: &Client, reload: Option<&str>, want: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        if let Some(url) = reload {
            c.goto(url).await.expect("page");
        }
        let t = text(c).await;
        if t.contains(want) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{want:?} never showed; the page says:\n{t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_text(c: &Client, want: &str) -> String {
    wait_for(c, None, want).await
}

fn console_link(net: &TestNet, node: &str, role: Option<&str>) -> String {
    let mut args = vec!["console", "open"];
    let dir = net.node(node).dir.join("operators");
    let (cert, key);
    if let Some(role) = role {
        cert = dir.join(format!("{role}.pem")).display().to_string();
        key = dir.join(format!("{role}.key")).display().to_string();
        args.extend(["--operator-cert", &cert, "--operator-key", &key]);
    }
    ok(net.cli(node, &args)).trim().to_string()
}

#[test]
fn operators_work_in_the_console_as_in_the_cli() {
    let options = Options {
        console: true,
        role_operators: true,
        four_eyes: true,
        manual_confirm: vec!["44".into()],
        health: isms_config::Health {
            interval: Duration::from_millis(200),
            ..Default::default()
        },
        ..Options::default()
    };
    let net = TestNet::start_with(&Topology::uniform(&["44"], 1, 0), &options);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let browser = Browser::open(1366, 768).await;
        let c = browser.client.clone();
        // Sign in: the link works once.
        let link = console_link(&net, "ministry", None);
        c.goto(&link).await.expect("sign in");
        let page = wait_for(&c, Some(&format!("{}/", base(&link))), "enterprise/e4401").await;
        assert!(page.contains("网络 Network") && page.contains("enterprise/e4401"), "{page}");
        shot(&c, "network").await;
        c.goto(&link).await.expect("again");
        wait_text(&c, "Link not valid").await;
        // The session's start is in the trail, once; so is the link refused the second time.
        let trail = |action: &str| -> Vec<Value> {
            net.cli_json("ministry", &["audit", "list", "--action", action, "--json"])
                .and_then(|v| v["entries"].as_array().cloned())
                .unwrap_or_default()
        };
        let started = trail("console.signin");
        assert_eq!(started.len(), 1, "{started:?}");
        assert_eq!(started[0]["operator"], "admin", "{started:?}");
        let refused = trail("refused");
        assert!(
            refused.iter().any(|e| e["outcome"] == "console link not valid"),
            "{refused:?}"
        );

        // The issue form: a bad domain gets the CLI's error and stores nothing.
        c.goto(&format!("{}/issue", base(&link))).await.expect("issue");
        let cli = net.cli(
            "ministry",
            &["directive", "issue", "--to", "all", "--block-domain", "bad..example"],
        );
        let cli_error = String::from_utf8_lossy(&cli.stderr)
            .trim()
            .trim_start_matches("error: ")
            .to_string();
        assert!(!cli_error.is_empty());
        fill(&c, "to", "all").await;
        fill(&c, "rules", "domain bad..example").await;
        c.find(Locator::Id("submit")).await.expect("submit").click().await.expect("click");
        let page = wait_text(&c, "错误 Error").await;
        assert!(page.contains(&cli_error), "the CLI said {cli_error:?}; the form:\n{page}");
        shot(&c, "issue-error").await;
        let listed = net
            .cli_json("ministry", &["directive", "list", "--json"])
            .expect("list");
        assert_eq!(listed["directives"], json!([]), "nothing stored");

        // A good one: its page follows it live while the province confirms it.
        c.find(Locator::Id("rules")).await.expect("rules").clear().await.expect("clear");
        fill(&c, "rules", "domain console.example").await;
        c.find(Locator::Id("submit")).await.expect("submit").click().await.expect("click");
        wait_text(&c, "各企业 Enterprises").await;
        let url = c.current_url().await.expect("url").to_string();
        let id = url.rsplit('/').next().expect("id").to_string();
        c.execute("window.__notReloaded = 42;", vec![]).await.expect("mark");
        shot(&c, "directive-waiting").await;
        let ministry_window = c.window().await.expect("window");

        // To all: a major directive, held until a second operator approves it (O-6).
        wait_text(&c, "awaiting_approval").await;
        let approver = console_link(&net, "ministry", Some("approver"));
        let w = c.new_window(true).await.expect("tab");
        c.switch_to_window(w.handle).await.expect("switch");
        c.goto(&approver).await.expect("approver sign in");
        c.goto(&format!("{}/approvals", base(&approver))).await.expect("approvals");
        wait_text(&c, &id).await;
        shot(&c, "approvals").await;
        c.find(Locator::Css("button.approve")).await.expect("approve").click().await.expect("click");
        wait_text(&c, "已批准 Approved").await;

        let province = console_link(&net, "province/44", None);
        c.goto(&province).await.expect("province sign in");
        c.goto(&format!("{}/pending", base(&province))).await.expect("pending");
        wait_text(&c, &id).await;
        shot(&c, "pending").await;
        c.find(Locator::Css("button.confirm")).await.expect("confirm").click().await.expect("click");
        wait_text(&c, "已确认 Confirmed").await;

        c.switch_to_window(ministry_window).await.expect("back");
        wait_text(&c, "1 / 1").await;
        let page = text(&c).await;
        assert!(page.contains("executed"), "{page}");
        let marker = c.execute("return window.__notReloaded;", vec![]).await.expect("marker");
        assert_eq!(marker, json!(42), "the page was not reloaded");
        shot(&c, "directive-executed").await;

        // Returning with an empty reason: the CLI's error, nothing changes.
        let second = net.issue(&["--to", "province/44", "--block-domain", "second.example"]);
        let cli = net.cli("province/44", &["directive", "return", &second, "--reason", " "]);
        let cli_error = String::from_utf8_lossy(&cli.stderr)
            .trim()
            .trim_start_matches("error: ")
            .to_string();
        assert!(!cli_error.is_empty());
        let w = c.windows().await.expect("windows");
        c.switch_to_window(w[1].clone()).await.expect("province tab");
        c.goto(&format!("{}/pending", base(&province))).await.expect("pending");
        wait_text(&c, &second).await;
        let forms = c
            .find_all(Locator::Css("form[action$='/return'] button"))
            .await
            .expect("return buttons");
        forms[0].clone().click().await.expect("return");
        let page = wait_text(&c, "错误 Error").await;
        assert!(page.contains(&cli_error), "the CLI said {cli_error:?}; the page:\n{page}");
        let held = net.directive("province/44", &second).expect("view");
        let me = held["hops"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h["node"] == "province/44"))
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(me["state"], "received", "still waiting");

        // The other pages, each at 1366×768.
        c.switch_to_window(ministry_window_of(&c).await).await.expect("ministry tab");
        // The approver's sign-in replaced the admin's session in this browser: sign in again.
        c.goto(&console_link(&net, "ministry", None)).await.expect("sign in again");
        for (path, name, says) in [
            ("/directives", "directives", id.as_str()),
            ("/audit", "audit", "The hash chain is intact"),
            ("/faults", "faults", "故障 Faults"),
            ("/reports?month=2026-01", "reports", "Operation report for 2026-01"),
        ] {
            c.goto(&format!("{}{path}", base(&link))).await.expect("page");
            wait_text(&c, says).await;
            shot(&c, name).await;
        }

        // A viewer: no issue form; a post made by hand is refused and audited.
        let viewer = console_link(&net, "ministry", Some("viewer"));
        c.goto(&viewer).await.expect("viewer sign in");
        wait_text(&c, "viewer").await;
        assert!(c.find(Locator::Css("a[href='/issue']")).await.is_err(), "no issue link");
        c.goto(&format!("{}/issue", base(&viewer))).await.expect("issue");
        let page = wait_text(&c, "do not include issuing").await;
        assert!(!page.contains("下发 Issue\n"), "{page}");
        assert!(c.find(Locator::Id("submit")).await.is_err(), "no form");
        shot(&c, "viewer-issue").await;
        let status = c
            .execute(
                "const t = document.querySelector('meta[name=form-token]').content;\
                 return fetch('/issue', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'},\
                   body: 'form_token=' + t + '&to=all&kind=disposal&urgency=general&rules=domain%20forged.example'})\
                   .then(r => r.text());",
                vec![],
            )
            .await
            .expect("forged post");
        assert!(status.as_str().unwrap_or("").contains("错误 Error"), "{status}");
        let audit = net
            .cli_json("ministry", &["audit", "list", "--action", "refused", "--json"])
            .expect("audit");
        let refused = audit.to_string();
        assert!(
            refused.contains("viewer") && refused.contains("IssueDirective") && refused.contains("console"),
            "{refused}"
        );
        // A post from elsewhere, without the session's token: refused before anything.
        let status = c
            .execute(
                "return fetch('/issue', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'},\
                   body: 'to=all&kind=disposal&urgency=general&rules=domain%20csrf.example'}).then(r => r.status);",
                vec![],
            )
            .await
            .expect("post");
        assert_eq!(status, json!(403));
        let listed = net
            .cli_json("ministry", &["directive", "list", "--json"])
            .expect("list");
        assert_eq!(listed["directives"].as_array().map(Vec::len), Some(2), "{listed}");

        // Signing out ends the session, and says so in the trail.
        c.goto(&base(&viewer)).await.expect("network");
        wait_text(&c, "viewer").await;
        c.find(Locator::Css("form[action='/signout'] button"))
            .await
            .expect("sign out")
            .click()
            .await
            .expect("click");
        wait_text(&c, "Sign in").await;
        c.goto(&base(&viewer)).await.expect("after");
        wait_text(&c, "Sign in").await;
        let ended = trail("console.signout");
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert_eq!(ended[0]["operator"], "viewer", "{ended:?}");
        c.close().await.expect("close");
    });
}

/// `http://host:port` of a console link.
fn base(link: &str) -> String {
    link.split("/signin").next().expect("base").to_string()
}

async fn fill(c: &Client, id: &str, value: &str) {
    c.find(Locator::Id(id))
        .await
        .expect(id)
        .send_keys(value)
        .await
        .expect("type");
}

/// The first window (the ministry's).
async fn ministry_window_of(c: &Client) -> fantoccini::wd::WindowHandle {
    c.windows().await.expect("windows")[0].clone()
}
