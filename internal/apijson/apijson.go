// Package apijson writes the JSON answers of pryv-tls's own HTTP routes
// (the admin API, the control socket's cluster routes, the key rotation),
// errors in the Pryv API's shape {"error": {"id", "message"}}, which the
// Pryv SDKs and `pryv-tls` itself read: one writer, so the routes cannot
// drift apart.
package apijson

import (
	"encoding/json"
	"net/http"
)

// Write answers status with v as JSON.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The status is sent: an encoding error (a client gone) has no one to
	// be told to.
	_ = json.NewEncoder(w).Encode(v)
}

// Body is the Pryv API's error shape.
type Body struct {
	Error Detail `json:"error"`
}

// Detail is an error's id (what a program tests) and message (what a
// person reads).
type Detail struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

// Error answers status with the error id and message in the Pryv API's
// shape.
func Error(w http.ResponseWriter, status int, id, msg string) {
	Write(w, status, Body{Detail{ID: id, Message: msg}})
}
