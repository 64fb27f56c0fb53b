"""The federation page served at /ui (index.html, ui.css, ui.js): wanfedtx.http.ui."""
