// Package jsclient_test runs the browser client, client/js/wshub.js, in a
// real headless Chromium against real hubs. It lives in the browsertest
// module so that the library's module never requires chromedp.
package jsclient_test
