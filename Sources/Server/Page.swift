import Hummingbird

/// The chat page (Page/index.html, app.js, app.css), compiled into the binary.
enum Page {
    /// Scripts and styles only from this server, no inline script: the page's own defence should
    /// model output ever reach the DOM as markup.
    static let policy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
        "media-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

    static func file(_ bytes: [UInt8], type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-cache", .contentSecurityPolicy: policy,
                                        .init("X-Content-Type-Options")!: "nosniff"],
                 body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func add(to router: Router<ServerContext>) {
        router.get("/") { _, _ in file(PackageResources.index_html, type: "text/html; charset=utf-8") }
        router.get("/app.js") { _, _ in file(PackageResources.app_js, type: "text/javascript; charset=utf-8") }
        router.get("/app.css") { _, _ in file(PackageResources.app_css, type: "text/css; charset=utf-8") }
    }
}
