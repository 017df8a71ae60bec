-- wrk script of the gateway bench: the same POST body (a GraphQL request) on every request.
-- Env: BODY (the JSON body).
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
