// swift-tools-version:6.0
import PackageDescription

// Without a target CPU, Swift emits SSE2 only: FMA becomes a libm call per lane and
// Float16 conversion a function call. Native x86_64 builds target Haswell (AVX2, FMA, F16C);
// set MINICPMO_TARGET_CPU to override (or to "generic" to opt out).
import Foundation
let targetCPU: String? = {
    if let cpu = ProcessInfo.processInfo.environment["MINICPMO_TARGET_CPU"] {
        return cpu == "generic" ? nil : cpu
    }
    #if arch(x86_64)
    return "haswell"
    #else
    return nil
    #endif
}()
let fastMath: [SwiftSetting] = targetCPU.map { [.unsafeFlags(["-target-cpu", $0])] } ?? []
let fastC: [CSetting] = [.unsafeFlags(["-O3"] + (targetCPU.map { ["-march=\($0)"] } ?? []))]

let package = Package(
    name: "MiniCPMO",
    platforms: [.macOS(.v15)],  // Synchronization.Atomic
    products: [
        .library(name: "MiniCPMO", targets: ["MiniCPMO"]),
        .executable(name: "minicpmo", targets: ["MiniCPMOCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.0"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .target(name: "CKernels", cSettings: fastC),
        .target(name: "Kernels", dependencies: [
            "CKernels",
            .target(name: "CBLAS", condition: .when(platforms: [.linux])),
        ], swiftSettings: fastMath),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng16",
                       providers: [.apt(["libpng-dev"]), .brew(["libpng"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg62-turbo-dev"]), .brew(["jpeg-turbo"])]),
        .target(name: "CImageCodecs", dependencies: ["CPNG", "CJPEG"], cSettings: fastC),
        .systemLibrary(name: "CSoxr", path: "Sources/CSoxr", pkgConfig: "soxr",
                       providers: [.apt(["libsoxr-dev"]), .brew(["libsoxr"])]),
        .target(name: "Media", dependencies: [
            "CImageCodecs", "CSoxr",
            .target(name: "CBLAS", condition: .when(platforms: [.linux])),
        ], swiftSettings: fastMath),
        .target(name: "Weights", dependencies: ["Kernels"], swiftSettings: fastMath),
        .target(name: "Text", dependencies: ["CZlib"], swiftSettings: fastMath),
        .target(name: "Models", dependencies: ["Kernels", "Weights"], swiftSettings: fastMath),
        .target(name: "MiniCPMO", dependencies: ["Kernels", "Weights", "Text", "Models", "Media"], swiftSettings: fastMath),
        // The Hugging Face hub: its cache layout, and downloads into it.
        .target(name: "Hub", dependencies: [
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Scheduling, sessions and caches between the library and its front ends.
        .target(name: "Runtime", dependencies: ["MiniCPMO", "Media"], swiftSettings: fastMath),
        // The OpenAI-compatible HTTP API.
        .target(name: "Server", dependencies: [
            "Runtime", "MiniCPMO", "Media",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "MultipartKit", package: "multipart-kit"),
        ], resources: [
            // the chat page, compiled into the binary (PackageResources.*)
            .embedInCode("Page/index.html"), .embedInCode("Page/app.js"), .embedInCode("Page/app.css"),
        ]),
        .executableTarget(name: "MiniCPMOCLI", dependencies: [
            "MiniCPMO", "Runtime", "Server", "Hub",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: fastMath),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "TestSupport"], swiftSettings: fastMath),
        .testTarget(name: "MediaTests", dependencies: ["Media", "Weights", "TestSupport"], swiftSettings: fastMath),
        .testTarget(name: "WeightsTests", dependencies: ["Weights", "TestSupport"], swiftSettings: fastMath),
        .testTarget(name: "TextTests", dependencies: ["Text", "CZlib"], swiftSettings: fastMath),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "MiniCPMO", "TestSupport"], swiftSettings: fastMath),
        .testTarget(name: "MiniCPMOTests", dependencies: ["MiniCPMO", "TestSupport"], swiftSettings: fastMath),
        .testTarget(name: "ServerTests", dependencies: [
            "Server", "Runtime", "Media", "TestSupport",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "WSClient", package: "swift-websocket"),
        ]),
        .target(name: "StandInHub", dependencies: [
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Crypto", package: "swift-crypto"),
        ], path: "Tests/StandInHub"),
        .executableTarget(name: "stand-in-hub", dependencies: ["StandInHub"], path: "Tests/StandInHubServer"),
        .testTarget(name: "HubTests", dependencies: ["Hub", "StandInHub", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: [
            "Weights", "Media", "MiniCPMOCLI", "TestSupport", "StandInHub",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
        ], swiftSettings: fastMath),
    ]
)
