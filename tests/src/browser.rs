//! Headless Chromium driven over WebDriver (chromedriver + fantoccini, plain HTTP on
//! loopback), for the console's browser tests.
//!
//! `Browser::start` answers `Ok(None)` when Chromium or chromedriver is not installed, so a
//! developer without them sees the test skip with a message; under `CI=true` a missing
//! browser is an error. Override the binaries with `SWITCHYARD_CHROMIUM` and
//! `SWITCHYARD_CHROMEDRIVER`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// Chromium's flags for a sandbox-less, offline, reproducible run (CI runs as root, no network).
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
    shots: PathBuf,
}

fn find(env: &str, names: &[&str], extra: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    extra.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Where screenshots go: `target/console-screenshots/` in the workspace.
pub fn screenshot_dir() -> PathBuf {
    crate::crate_dir()
        .join("..")
        .join("target")
        .join("console-screenshots")
}

impl Browser {
    /// Starts chromedriver on a free port and opens a fresh Chromium session.
    pub async fn start() -> anyhow::Result<Option<Browser>> {
        let chromium = find(
            "SWITCHYARD_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
            &["/usr/lib/chromium/chromium"],
        );
        let driver = find(
            "SWITCHYARD_CHROMEDRIVER",
            &["chromedriver"],
            &["/usr/lib/chromium/chromedriver"],
        );
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let message = "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                anyhow::bail!("{message}: required under CI=true");
            }
            tracing::warn!("{message}: skipping the browser test");
            return Ok(None);
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", driver.display()))?;
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if ready.is_err() {
            let _ = child.kill().await;
            anyhow::bail!("chromedriver did not listen on port {port}");
        }
        let profile = tempfile::tempdir()?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let Value::Object(caps) = caps else {
            anyhow::bail!("capabilities are not an object");
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .context("opening a Chromium session through chromedriver")?;
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots)?;
        Ok(Some(Browser {
            client,
            driver: child,
            _profile: profile,
            shots,
        }))
    }

    /// Saves a PNG of the current page as `<name>.png` and answers its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client.goto(url).await?;
        Ok(())
    }

    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self.find(css).await?;
        field.clear().await?;
        field.send_keys(text).await?;
        Ok(())
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.find(css).await?.click().await?;
        Ok(())
    }

    /// Clicks something that loads a new page (a link, a form's button) and waits until the
    /// new document has loaded.
    pub async fn submit(&self, css: &str) -> anyhow::Result<()> {
        self.client
            .execute("window.__switchyardOldPage = true;", vec![])
            .await?;
        self.click(css).await?;
        self.wait_for_new_page().await
    }

    /// Waits until the document marked before a navigation is replaced and loaded.
    pub async fn wait_for_new_page(&self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let state = self
                    .client
                    .execute(
                        "return window.__switchyardOldPage ? 'old' : document.readyState;",
                        vec![],
                    )
                    .await;
                if matches!(state, Ok(Value::String(s)) if s == "complete") {
                    return Ok::<_, anyhow::Error>(());
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
        .await
        .context("the next page did not load")?
    }

    /// Waits for an element to appear.
    pub async fn find(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => Ok(element),
            Err(err) => {
                let url = self.client.current_url().await.map(|u| u.to_string());
                let url = url.unwrap_or_default();
                Err(anyhow::anyhow!("no element {css} on {url}: {err}"))
            }
        }
    }

    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.find(css).await?.text().await?)
    }

    pub async fn value(&self, css: &str) -> anyhow::Result<String> {
        Ok(self
            .find(css)
            .await?
            .prop("value")
            .await?
            .unwrap_or_default())
    }

    /// Picks the option with `value` in a `<select>`.
    pub async fn select(&self, css: &str, value: &str) -> anyhow::Result<()> {
        self.find(css).await?.select_by_value(value).await?;
        Ok(())
    }

    /// Sets a field's value directly, for inputs whose typing is locale-dependent
    /// (`type=date`, `type=datetime-local`).
    pub async fn set_value(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let field = self.find(css).await?;
        let field = serde_json::to_value(&field)?;
        self.client
            .execute(
                "arguments[0].value = arguments[1];",
                vec![field, Value::String(value.to_owned())],
            )
            .await?;
        Ok(())
    }

    /// Fetches `path` from the page's origin with its cookies, answering status and body.
    pub async fn fetch(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let got = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch(arguments[0]).then(async r => done([r.status, await r.text()])).catch(e => done([0, String(e)]));",
                vec![Value::String(path.to_owned())],
            )
            .await?;
        let status = got[0].as_u64().unwrap_or(0);
        Ok((
            u16::try_from(status).unwrap_or(0),
            got[1].as_str().unwrap_or_default().to_owned(),
        ))
    }

    pub async fn exists(&self, css: &str) -> anyhow::Result<bool> {
        Ok(!self.client.find_all(Locator::Css(css)).await?.is_empty())
    }

    pub async fn path(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.path().to_owned())
    }

    pub async fn close(mut self) -> anyhow::Result<()> {
        // Ending the session also ends Chromium; chromedriver then goes with the child.
        if let Err(err) = self.client.close().await {
            tracing::warn!(error = %err, "closing the WebDriver session");
        }
        let _ = self.driver.kill().await;
        Ok(())
    }
}
