package api

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// OpenAPI is the OpenAPI 3 document of this API: what the server serves.
// The end-to-end tests validate every request and response against it, so
// it cannot drift from the handlers.
//
//go:embed openapi.yaml
var OpenAPI []byte

func openAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", OpenAPI)
}
