//! The page in a real browser (headless Chromium at `/usr/bin/chromium`, which `.ci/run`
//! installs): comments saved through the API appear, a deleted post's comments disappear, a
//! refused delete shows the store's message, the page fits a narrow and a wide window, and
//! nothing is logged as a JavaScript error or exception. Without Chromium the test says it
//! was not run, and passes.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use headless_chrome::browser::tab::Tab;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::Emulation;
use headless_chrome::protocol::cdp::Log::{LogEntryLevel, LogEntrySource};
use headless_chrome::protocol::cdp::Runtime::ConsoleAPICalledEventTypeOption;
use headless_chrome::{Browser, LaunchOptions};
use serde_json::{json, Value};
use support::{call, serve, PATIENCE};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The browser, or `None` (said on stderr) when this machine has none.
fn chromium(width: u32, height: u32) -> Option<Browser> {
    if !Path::new(CHROMIUM).exists() {
        eprintln!(
            "NOTE: the browser test was NOT run: {CHROMIUM} is missing \
             (`apt-get install chromium`, as .ci/run does)"
        );
        return None;
    }
    let options = LaunchOptions::default_builder()
        .path(Some(CHROMIUM.into()))
        // Chromium refuses its sandbox to root (CI runs as root).
        .sandbox(!running_as_root())
        .window_size(Some((width, height)))
        .idle_browser_timeout(PATIENCE * 4)
        .build()
        .expect("launch options");
    Some(Browser::new(options).expect("Chromium starts"))
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uid = status.lines().find(|l| l.starts_with("Uid:"))?;
            Some(uid.split_whitespace().nth(1)? == "0")
        })
        .unwrap_or(false)
}

/// A tab on `url` that records every console error and uncaught exception.
fn open(
    browser: &Browser,
    url: &str,
    width: u32,
    height: u32,
) -> (Arc<Tab>, Arc<Mutex<Vec<String>>>) {
    let tab = browser.new_tab().expect("a tab");
    tab.set_default_timeout(PATIENCE);
    // Headless Chromium's windows are at least 500px wide: narrower is a device's viewport.
    tab.call_method(Emulation::SetDeviceMetricsOverride {
        width,
        height,
        device_scale_factor: 1.0,
        mobile: width < 600,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .expect("the window's size");
    tab.enable_log().unwrap().enable_runtime().unwrap();
    let problems = Arc::new(Mutex::new(Vec::new()));
    let seen = problems.clone();
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let problem = match event {
            // The one failed request the test makes on purpose, the refused delete (409),
            // is Chromium's network log, not a JavaScript error: the page shows its message.
            Event::LogEntryAdded(e)
                if e.params.entry.source == LogEntrySource::Network
                    && e.params.entry.text.contains("status of 409 (Conflict)") =>
            {
                None
            }
            Event::LogEntryAdded(e) if e.params.entry.level == LogEntryLevel::Error => {
                Some(format!("console: {}", e.params.entry.text))
            }
            Event::RuntimeConsoleAPICalled(e)
                if e.params.Type == ConsoleAPICalledEventTypeOption::Error =>
            {
                Some(format!("console.error: {:?}", e.params.args))
            }
            Event::RuntimeExceptionThrown(e) => {
                Some(format!("exception: {:?}", e.params.exception_details))
            }
            _ => None,
        };
        if let Some(problem) = problem {
            seen.lock().unwrap().push(problem);
        }
    }))
    .unwrap();
    tab.navigate_to(url)
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    (tab, problems)
}

/// The value of a JavaScript expression on the page.
fn eval(tab: &Tab, expression: &str) -> Value {
    tab.evaluate(expression, false)
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
        .value
        .unwrap_or(Value::Null)
}

/// Waits until `expression` is true on the page.
fn until(tab: &Tab, what: &str, expression: &str) {
    let start = Instant::now();
    while eval(tab, expression) != json!(true) {
        assert!(
            start.elapsed() < PATIENCE,
            "never true: {what} ({expression})"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn comments_shown(tab: &Tab, post: &str) -> Value {
    eval(
        tab,
        &format!(
            "JSON.stringify([...document.querySelectorAll('article[data-id=\"{post}\"] li.comment > span')].map(s => s.textContent))"
        ),
    )
}

fn check_page(width: u32, height: u32) {
    let Some(browser) = chromium(width, height) else {
        return;
    };
    let served = serve();
    let base = served.running.url();
    let post = call(
        &base,
        "POST",
        "/api/posts",
        Some(json!({ "title": "Seen live", "body": "A post the test writes to." })),
    )
    .body;
    let id = post["id"].as_str().unwrap().to_owned();
    let (tab, problems) = open(&browser, &base, width, height);
    until(
        &tab,
        "the post shows",
        &format!("!!document.querySelector('article[data-id=\"{id}\"]')"),
    );
    until(
        &tab,
        "the stream is live",
        "document.getElementById('status').textContent === 'live'",
    );
    assert_eq!(eval(&tab, "window.innerWidth"), json!(width));

    // A comment saved through the API appears on the page.
    let comment = call(
        &base,
        "POST",
        &format!("/api/posts/{id}/comments"),
        Some(json!({ "content": "from the API" })),
    )
    .body;
    let comment_id = comment["id"].as_str().unwrap().to_owned();
    until(
        &tab,
        "the API's comment shows",
        &format!("!!document.querySelector('li.comment[data-id=\"{comment_id}\"]')"),
    );
    assert_eq!(comments_shown(&tab, &id), json!(r#"["from the API"]"#));

    // And one typed into the page's own form.
    let input = tab
        .find_element(&format!("article[data-id=\"{id}\"] .comment-form input"))
        .unwrap();
    input
        .click()
        .unwrap()
        .type_into("typed on the page")
        .unwrap();
    tab.press_key("Enter").unwrap();
    until(
        &tab,
        "the typed comment shows",
        &format!("document.querySelectorAll('article[data-id=\"{id}\"] li.comment').length === 2"),
    );
    assert_eq!(
        comments_shown(&tab, &id),
        json!(r#"["from the API","typed on the page"]"#)
    );

    // A delete refused by an editor's link: the store's message, on the page.
    call(
        &base,
        "POST",
        &format!("/api/posts/{id}/editors"),
        Some(json!({ "username": "nadia" })),
    );
    until(&tab, "the editor shows", &format!("document.querySelector('article[data-id=\"{id}\"] .editor')?.textContent.startsWith('nadia') === true"));
    tab.find_element(&format!("article[data-id=\"{id}\"] button.delete-post"))
        .unwrap()
        .click()
        .unwrap();
    until(
        &tab,
        "the refusal shows",
        "!document.getElementById('error').hidden",
    );
    let shown = eval(&tab, "document.getElementById('error').textContent");
    assert_eq!(
        shown,
        json!(format!(
            "cannot delete posts '{id}': 1 row in post_editors still links to it; unlink it first"
        ))
    );
    assert_eq!(
        comments_shown(&tab, &id),
        json!(r#"["from the API","typed on the page"]"#)
    );

    // Unlinked, then deleted through the API: the post and its comments leave the page.
    let user = eval(
        &tab,
        &format!("document.querySelector('article[data-id=\"{id}\"] .editor').dataset.id"),
    );
    let user = user.as_str().unwrap();
    assert_eq!(
        call(
            &base,
            "DELETE",
            &format!("/api/posts/{id}/editors/{user}"),
            None
        )
        .status,
        204
    );
    assert_eq!(
        call(&base, "DELETE", &format!("/api/posts/{id}"), None).status,
        204
    );
    until(&tab, "the post and its comments are gone", &format!(
        "!document.querySelector('article[data-id=\"{id}\"]') && !document.querySelector('li.comment[data-id=\"{comment_id}\"]') && document.querySelectorAll('li.comment').length === 0"
    ));

    // The layout: nothing wider than the window; posts side by side only when there is room.
    for title in ["left", "right"] {
        call(&base, "POST", "/api/posts", Some(json!({ "title": title })));
    }
    until(
        &tab,
        "two posts show",
        "document.querySelectorAll('article.post').length === 2",
    );
    assert_eq!(
        eval(
            &tab,
            "document.documentElement.scrollWidth <= window.innerWidth"
        ),
        json!(true),
        "no horizontal scrolling at {width}px"
    );
    let columns = eval(
        &tab,
        "getComputedStyle(document.getElementById('posts')).gridTemplateColumns.split(' ').length",
    );
    assert_eq!(
        columns,
        json!(if width < 832 { 1 } else { 2 }),
        "columns at {width}px"
    );

    let problems = problems.lock().unwrap().clone();
    assert!(
        problems.is_empty(),
        "JavaScript errors at {width}px: {problems:#?}"
    );
}

#[test]
fn the_page_follows_the_store_live_in_a_narrow_window() {
    check_page(375, 812);
}

#[test]
fn the_page_follows_the_store_live_in_a_wide_window() {
    check_page(1280, 900);
}
