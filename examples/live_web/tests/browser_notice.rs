//! Says, in the test output, whether the browser test runs (a test target without the
//! libtest harness, so that its line is printed and not captured).

fn main() {
    if std::path::Path::new("/usr/bin/chromium").exists() {
        println!("live web page's browser test: running with /usr/bin/chromium");
    } else {
        println!(
            "live web page's browser test: NOT RUN; /usr/bin/chromium is missing \
             (`apt-get install chromium`, as .ci/run does)"
        );
    }
}
