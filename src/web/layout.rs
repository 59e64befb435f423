//! The frame every review UI page shares: head (our own stylesheet and script, nothing from
//! elsewhere), the navigation (`a#nav-queue`, `a#nav-calibration`, `form#logout`), and the
//! reminder that AI scores are advisory. Pages pass their body as maud [`Markup`]; maud
//! escapes every interpolated value.

use maud::{html, Markup, DOCTYPE};

use super::session::{Session, CSRF_FIELD};

/// A whole page. `session` is `None` on the login page and on errors shown before login.
pub fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · grader review" }
                link rel="stylesheet" href="/ui/static/app.css";
                script src="/ui/static/app.js" defer {}
            }
            body {
                header.topbar {
                    a.brand href="/ui/queue" { "grader" span.brand-sub { "review" } }
                    nav {
                        a #nav-queue href="/ui/queue" { "Review queue" }
                        a #nav-calibration href="/ui/calibration" { "Calibration" }
                    }
                    @if let Some(s) = session {
                        div.who {
                            span.person title={ "tenant " (s.tenant.name) } { (s.name) }
                            span.tenant { (s.tenant.name) }
                            form #logout method="post" action="/ui/logout" {
                                (csrf_input(s))
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
                footer {
                    "AI scores are advisory: a person decides. Every score shows the prompt version and model that produced it."
                }
            }
        }
    }
}

/// The hidden CSRF field every POST form carries.
pub fn csrf_input(session: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf); }
}
