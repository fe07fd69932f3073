//! A bar as Python sees it ([`Bar`]): the bridge's bar as a frozen, comparable, picklable
//! Python object.
//!
//! Invariants: a `Bar` holds exactly the bridge's bar's fields, unchanged; it is immutable
//! once made, and pickles to the arguments that make it again.

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

/// Bars made into Python objects between two chances for other threads to take the GIL.
const BARS_PER_HOLD: usize = 1024;

/// One bar: its start (Unix seconds) and prices.
#[pyclass(module = "ibbridge", frozen, get_all, eq)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bar {
    /// Start of the bar, Unix seconds.
    pub(crate) time: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
}

#[pymethods]
impl Bar {
    #[new]
    pub(crate) fn new(time: i64, open: f64, high: f64, low: f64, close: f64, volume: f64) -> Bar {
        Bar {
            time,
            open,
            high,
            low,
            close,
            volume,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Bar(time={}, open={}, high={}, low={}, close={}, volume={})",
            self.time, self.open, self.high, self.low, self.close, self.volume
        )
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let args = (
            self.time,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
        );
        (py.get_type::<Bar>(), args).into_pyobject(py)
    }
}

/// Bars on their way to an event loop: made into a Python list a chunk at a time, the GIL
/// let go between chunks, so that the loop's thread (waiting for the GIL) runs between them
/// rather than after a whole long history.
pub(crate) struct BarList(pub(crate) Vec<Bar>);

impl<'py> IntoPyObject<'py> for BarList {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        let list = PyList::empty(py);
        for (i, bar) in self.0.into_iter().enumerate() {
            if i > 0 && i % BARS_PER_HOLD == 0 {
                // Another thread asking for the GIL gets it here.
                py.detach(std::thread::yield_now);
            }
            list.append(bar)?;
        }
        Ok(list)
    }
}

impl From<bridge::protocol::Bar> for Bar {
    fn from(b: bridge::protocol::Bar) -> Bar {
        Bar {
            time: b.time,
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
        }
    }
}
