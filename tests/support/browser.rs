//! A real headless Chromium for end-to-end UI tests, driven over WebDriver (fantoccini) by
//! Debian's `chromedriver`.
//!
//! Each [`Browser`] starts its own chromedriver on a free loopback port and a Chromium with
//! a fresh profile directory, so tests can run in parallel and never share cookies. Nothing
//! is downloaded: the binaries are Debian's (`apt-get install chromium chromium-driver`,
//! which `.ci/run` does). When they are missing the test FAILS with that instruction rather
//! than passing silently, because a UI that was never rendered was never tested.
//!
//! ```ignore
//! let b = Browser::start().await;
//! b.goto(&format!("{}/ui/login", app.base)).await;
//! b.screenshot("01-login").await;          // target/ui-artifacts/01-login.png
//! b.close().await;
//! ```
//!
//! Paths can be overridden with `GRADER_CHROMEDRIVER` and `GRADER_CHROMIUM`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// How long [`Browser::find`] waits for an element: generous, because CI runs two browsers
/// and their servers on two cores. Absence is checked with [`Browser::count`], which does
/// not wait.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(30);

/// The window every screenshot is taken at: the size the UI must be readable at.
pub const WINDOW: (u32, u32) = (1280, 800);

fn binary(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// Where screenshots go: `target/ui-artifacts/` of this crate (CI keeps `target/`).
pub fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Installs Debian's chromium and chromium-driver when the default binaries are missing, so
/// that README's one test command works on a fresh machine of this kind (root, apt reachable).
/// Serialized: the two e2e tests run in parallel and apt takes one install at a time. Does
/// nothing when the paths were overridden or apt-get is absent; `require_binaries` then fails
/// with the instruction.
fn install_if_missing() {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let overridden = std::env::var_os("GRADER_CHROMEDRIVER").is_some()
        || std::env::var_os("GRADER_CHROMIUM").is_some();
    let present =
        Path::new(DEFAULT_CHROMEDRIVER).is_file() && Path::new(DEFAULT_CHROMIUM).is_file();
    if overridden || present || !Path::new("/usr/bin/apt-get").is_file() {
        return;
    }
    eprintln!("installing Debian's chromium and chromium-driver for the browser tests ...");
    let install = || {
        std::process::Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "chromium",
                "chromium-driver",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !install() {
        let _ = std::process::Command::new("apt-get")
            .args(["update", "-qq"])
            .status();
        install();
    }
}

/// Panics with the install instruction unless both binaries exist.
pub fn require_binaries() -> (PathBuf, PathBuf) {
    install_if_missing();
    let driver = binary("GRADER_CHROMEDRIVER", DEFAULT_CHROMEDRIVER);
    let chromium = binary("GRADER_CHROMIUM", DEFAULT_CHROMIUM);
    let missing: Vec<String> = [&driver, &chromium]
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "the browser end-to-end tests need Debian's Chromium and chromedriver, missing: {}. \
         Install them with `apt-get install -y --no-install-recommends chromium \
         chromium-driver` (.ci/run does), or point GRADER_CHROMIUM / GRADER_CHROMEDRIVER at \
         them.",
        missing.join(", ")
    );
    (driver, chromium)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("local address").port()
}

/// The chromedriver process, in a process group of its own so that a failed test that
/// never reaches [`Browser::close`] still ends the Chromium processes it started.
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group id is the child's pid (process_group(0)); a negative pid names the group.
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Browser {
    pub client: Client,
    // Field order: the session's client first, then the driver, then the profile dir.
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at [`WINDOW`].
    pub async fn start() -> Browser {
        let (driver_bin, chromium) = require_binaries();
        let port = free_port();
        let log = artifacts_dir().join(format!("chromedriver-{port}.log"));
        let mut cmd = Command::new(&driver_bin);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver_bin.display()));
        let driver = Driver { child };
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&url).await;

        let profile = tempfile::tempdir().expect("temporary Chromium profile directory");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--hide-scrollbars".into(),
            "--force-device-scale-factor=1".into(),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium.display().to_string(), "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "start a Chromium session through chromedriver ({}): {e}; its log is {}",
                    chromium.display(),
                    log.display()
                )
            });
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub async fn current_url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_else(|e| panic!("current URL: {e}"))
    }

    /// The page's HTML as the browser holds it now.
    pub async fn source(&self) -> String {
        self.client
            .source()
            .await
            .unwrap_or_else(|e| panic!("page source: {e}"))
    }

    /// The first element matching `css`, waiting up to [`FIND_TIMEOUT`] for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        match tokio::time::timeout(
            FIND_TIMEOUT,
            self.client.wait().for_element(Locator::Css(css)),
        )
        .await
        {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => panic!("find {css:?} on {}: {e}", self.current_url().await),
            Err(_) => panic!(
                "no element {css:?} on {} after {FIND_TIMEOUT:?}; page:\n{}",
                self.current_url().await,
                self.source().await
            ),
        }
    }

    /// Every element matching `css` now (no waiting; may be empty).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find all {css:?}: {e}"))
    }

    pub async fn count(&self, css: &str) -> usize {
        self.find_all(css).await.len()
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css:?}: {e}"))
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css:?}: {e}"));
    }

    /// Types `text` into the element (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear()
            .await
            .unwrap_or_else(|err| panic!("clear {css:?}: {err}"));
        e.send_keys(text)
            .await
            .unwrap_or_else(|err| panic!("type into {css:?}: {err}"));
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value:?} in {css:?}: {e}"));
    }

    /// Runs `script` in the page (WebDriver scripts are not subject to the page's CSP).
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("execute {script:?}: {e}"))
    }

    /// The value of cookie `name` as the browser stores it (HttpOnly ones included).
    pub async fn cookie(&self, name: &str) -> String {
        self.client
            .get_named_cookie(name)
            .await
            .map(|c| c.value().to_string())
            .unwrap_or_else(|e| panic!("cookie {name}: {e}"))
    }

    /// Saves a PNG of the viewport as `target/ui-artifacts/{name}.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let path = artifacts_dir().join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Ends the session (Chromium quits) and then chromedriver.
    pub async fn close(self) {
        let Browser {
            client,
            _driver: driver,
            _profile: profile,
        } = self;
        let _ = client.close().await;
        drop(driver);
        drop(profile);
    }
}

/// Polls chromedriver's `/status` until it is ready (at most 20 s).
async fn wait_ready(url: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{url}/status")).send().await {
            if let Ok(v) = r.json::<Value>().await {
                if v["value"]["ready"] == json!(true) {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver at {url} not ready after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
