// Starts Swagger UI on /docs; a file of its own because the CSP forbids inline scripts.
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    persistAuthorization: false,
    validatorUrl: null,
  });
})();
