//! The page's files, built into the binary: the HTML, its script and styles, and TradingView's
//! lightweight-charts 5.3.0 (vendored from the npm registry under `runner/assets/`, with its
//! Apache-2.0 licence), so the page and the report work with no internet.
//!
//! Invariants: the page loads nothing from outside the binary; the charts library is the
//! vendored file, unchanged.

pub(crate) const PAGE: &str = include_str!("../../assets/dashboard/index.html");
pub(crate) const APP_JS: &str = include_str!("../../assets/dashboard/app.js");
pub(crate) const STYLE: &str = include_str!("../../assets/dashboard/style.css");
pub(crate) const CHARTS_JS: &str =
    include_str!("../../assets/lightweight-charts/lightweight-charts.standalone.production.js");
pub(crate) const CHARTS_LICENCE: &str = include_str!("../../assets/lightweight-charts/LICENSE");
